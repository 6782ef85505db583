from django.contrib import admin

from pipelines.models import PipelineRun, RunEvent


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
