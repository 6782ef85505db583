"""Releases and deployments are read here, never edited; environments are edited here."""

from django.contrib import admin
from django.http import HttpRequest

from releases.models import Deployment, DeploymentEvent, Environment, Release


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["project", "number", "commit_sha", "image", "created_at"]
    list_filter = ["project"]


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    fields = readonly_fields = ("at", "from_status", "to_status", "detail")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "environment",
        "release",
        "previous_release",
        "kind",
        "requested_by",
        "status",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "environment__project"]
    inlines = [DeploymentEventInline]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "frontend_port", "live_slot", "current_release"]
    list_filter = ["project"]
    # Which slot is live and what runs there belong to deployments, not to hand edits.
    readonly_fields = ["live_slot", "current_release", "blue_port", "green_port", "frontend_port"]
    filter_horizontal = ["deployers"]
