from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Who deployed, promoted, rolled back, or changed a permission or a secret, and when."""

    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import signals  # noqa: F401  (connects the receivers)
