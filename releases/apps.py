from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    """Releases, environments and deployments (blue/green behind HAProxy) live here."""

    name = "releases"
    verbose_name = "Releases"

    def ready(self) -> None:
        from releases import signals  # noqa: F401  (connects the audit receivers)
