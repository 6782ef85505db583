from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Keeping Dockyard running: heartbeats, the reaper, start-up reconciliation, retention."""

    name = "operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from operations import worker_signals  # noqa: F401  (connects the worker's hooks)
