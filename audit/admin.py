"""The audit log, read-only: entries are evidence, nobody edits or deletes them here."""

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "target_type", "target_label"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor", "target_label", "target_id"]
    date_hierarchy = "at"
    fields = readonly_fields = (
        "at",
        "actor",
        "actor_user",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "detail",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
