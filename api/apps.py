from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The REST API under /api/v1/ and chat-ops, for bots and scripts."""

    name = "api"
    verbose_name = "API"
