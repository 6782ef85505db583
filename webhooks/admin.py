from django.contrib import admin

from webhooks.models import Delivery, NotificationEndpoint


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "forge", "event", "project", "status_code", "outcome"]
    list_filter = ["forge", "event", "status_code"]
    search_fields = ["delivery_id", "outcome"]
    exclude = ["body"]
    readonly_fields = [f.name for f in Delivery._meta.fields if f.name != "body"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(NotificationEndpoint)
class NotificationEndpointAdmin(admin.ModelAdmin):
    list_display = ["project", "url", "on_runs", "on_deployments", "active"]
    list_filter = ["active", "project"]
