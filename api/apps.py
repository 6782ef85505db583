from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The REST API under /api/v1/ and chat-ops, for bots and scripts."""

    name = "api"
    verbose_name = "API"

    def ready(self) -> None:
        from api import signals  # noqa: F401  (connects the audit receivers)
