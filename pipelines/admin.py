from django.contrib import admin
from django.http import HttpRequest

from pipelines.models import PipelineRun, Project, ProjectSecret, RunEvent


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "forge", "repository_url", "default_branch", "created_at"]
    search_fields = ["slug", "repository_url"]
    readonly_fields = ["repository_key", "created_at"]


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = readonly_fields = ("at", "stage", "from_status", "to_status", "reason")
    extra = 0
    can_delete = False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    """Runs are read here; their status moves only through the pipeline's state machine."""

    list_display = ["__str__", "ref", "commit_sha", "status", "created_at", "finished_at"]
    list_filter = ["status", "project"]
    inlines = [RunEventInline]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(ProjectSecret)
class ProjectSecretAdmin(admin.ModelAdmin):
    """Which secrets exist; values are set with `manage.py setsecret` and never shown."""

    list_display = ["project", "name", "updated_at"]
    fields = readonly_fields = ("project", "name", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
