from django.apps import AppConfig


class WebConfig(AppConfig):
    """The pages people use (dashboard, runs, projects, environments), the live run log over
    WebSocket, and the commands that join several apps (demo). On top of every domain app."""

    name = "web"
    verbose_name = "Web UI"
