"""Reads for projects."""

from collections.abc import Iterable

from infrastructure.repository_urls import repository_key
from projects.models import Project, ProjectSecret


def project_for_repository(*, forge: str, urls: Iterable[str]) -> Project | None:
    """The forge's project whose repository any of `urls` names (https, ssh, scp-like, path)."""
    keys = {repository_key(url) for url in urls}
    return Project.objects.filter(forge=forge, repository_key__in=keys).first()


def project_secret_values(project: Project) -> list[str]:
    """Every secret value of the project: what log masking hides."""
    return list(ProjectSecret.objects.filter(project=project).values_list("value", flat=True))


def project_secrets(project: Project, names: Iterable[str]) -> dict[str, str]:
    """The named secrets of the project, by name; names without a value are left out."""
    return dict(
        ProjectSecret.objects.filter(project=project, name__in=list(names)).values_list(
            "name", "value"
        )
    )
