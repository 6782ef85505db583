"""What runs on a given base: the projects, releases and environments whose images were built
on it, today and before (`GET /api/v1/images/?base=`).

A base is named by an outside image reference (`debian:12`, `127.0.0.1:5000/infra/base:1`),
by a digest (`sha256:…`: an outside image's, or a base Dockyard built), or by both
(`repository@sha256:…`). A run is on the base when a layer of its stack was built FROM it
(LayerBuild.upstream) or is it (LayerBuild.reference).
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from builds.models import LayerBuild
from pipelines.models import PipelineRun
from projects.models import Project
from releases.models import Environment, Release


class BaseNotUnderstood(ValueError):
    """The base given is neither a reference nor a digest; the message says what it was."""


@dataclass(frozen=True)
class ProjectOnBase:
    slug: str
    # Whether the project's newest default-branch build is on the base.
    current: bool
    runs: list[int]


@dataclass(frozen=True)
class ReleaseOnBase:
    project: str
    number: int
    image: str
    run: int
    created_at: datetime
    # The environments serving it now.
    serving: list[str]


@dataclass(frozen=True)
class EnvironmentOnBase:
    project: str
    environment: str
    release: int


@dataclass
class ImagesOnBase:
    base: str
    projects: list[ProjectOnBase] = field(default_factory=list)
    releases: list[ReleaseOnBase] = field(default_factory=list)
    # Serving a release built on the base right now.
    environments: list[EnvironmentOnBase] = field(default_factory=list)


def images_on_base(base: str) -> ImagesOnBase:
    """Everything built on `base`; BaseNotUnderstood when it is neither reference nor digest."""
    base = base.strip()
    run_ids = set(LayerBuild.objects.filter(_layer_matches(base)).values_list("run_id", flat=True))
    answer = ImagesOnBase(base=base)
    by_project: dict[str, list[int]] = {}
    runs = PipelineRun.objects.filter(pk__in=run_ids).select_related("project")
    for run in runs.order_by("project__slug", "number"):
        by_project.setdefault(run.project.slug, []).append(run.number)
    current = _projects_currently_on(run_ids)
    answer.projects = [
        ProjectOnBase(slug=slug, current=slug in current, runs=numbers)
        for slug, numbers in by_project.items()
    ]
    releases = list(
        Release.objects.filter(run_id__in=run_ids)
        .select_related("project", "run")
        .order_by("project__slug", "number")
    )
    serving: dict[int, list[str]] = {}
    for environment in Environment.objects.filter(current_release__in=releases).order_by("name"):
        serving.setdefault(environment.current_release_id or 0, []).append(environment.name)
    for release in releases:
        answer.releases.append(
            ReleaseOnBase(
                project=release.project.slug,
                number=release.number,
                image=release.image,
                run=release.run.number,
                created_at=release.created_at,
                serving=serving.get(release.pk, []),
            )
        )
        answer.environments += [
            EnvironmentOnBase(
                project=release.project.slug, environment=name, release=release.number
            )
            for name in serving.get(release.pk, [])
        ]
    return answer


def _layer_matches(base: str) -> Q:
    """The layers built on `base` (FROM it, outside the stack) or that are it."""
    if not base or any(character.isspace() for character in base) or len(base) > 600:
        raise BaseNotUnderstood(
            f"{base!r} is not an image reference or digest (e.g. debian:12, "
            "registry.example.com/infra/base:1, sha256:…)"
        )
    if base.startswith("sha256:"):
        return Q(upstream_images__digest=base) | Q(reference__endswith=f"@{base}")
    reference, at, digest = base.partition("@")
    if at:
        if not digest.startswith("sha256:"):
            raise BaseNotUnderstood(f"{base!r}: what follows '@' must be a sha256: digest")
        return Q(upstream_images__digest=digest) | Q(reference=base)
    return Q(upstream_images__reference=reference)


def _projects_currently_on(run_ids: set[int]) -> set[str]:
    """The projects whose newest default-branch build is one of `run_ids`."""
    current = set()
    projects = Project.objects.filter(runs__in=run_ids).distinct()
    for project in projects:
        newest = (
            PipelineRun.objects.filter(
                project=project, ref=f"refs/heads/{project.default_branch}", layers__isnull=False
            )
            .order_by("-number")
            .values_list("pk", flat=True)
            .first()
        )
        if newest in run_ids:
            current.add(project.slug)
    return current
