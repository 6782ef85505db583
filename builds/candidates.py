"""A run's candidates: each image it built to test or publish, pushed as soon as it is built,
by run (`<namespace>/candidates/<image>:run-<number>`), never yet under a branch or commit tag.

The stages after the build pull exactly that digest on whichever worker takes them, so the
image tested is the image published: publishing only tags the candidate in the registry
(builds.publishing). A run that never publishes leaves no tag outside the candidates, and
retention deletes candidates once their run is long over (candidates_prune).
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from builds.build_log import BuildLog
from builds.models import LayerBuild, LayerRole
from builds.pushing import image_push
from infrastructure.docker_engine import ContainerEngine
from infrastructure.registry import RegistryError, manifest_delete
from projects.models import Project
from projects.services import project_namespace
from projects.spec import CANDIDATES_FOLDER


def candidate_repository(project_slug: str, image_name: str) -> str:
    """Where the candidates of a project's image go: inside its namespace, apart from what it
    publishes (projects.spec refuses to publish there)."""
    return f"{project_namespace(project_slug)}/{CANDIDATES_FOLDER}/{image_name}"


def candidate_push(
    *,
    project: Project,
    run_number: int,
    name: str,
    image_id: str,
    engine: ContainerEngine,
    log: BuildLog,
) -> str:
    """Push a freshly built image of the run as its candidate; its reference by digest."""
    repository = candidate_repository(project.slug, name)
    # By the run's number, as its page and the {run} tag name it (unique per project, and the
    # repository is the project's).
    tag = f"run-{run_number}"
    log.line(f"{name}: pushing the candidate {repository}:{tag}")
    digest = image_push(engine, log, image_id=image_id, repository=repository, tag=tag)
    log.line(f"{name}: candidate {repository}@{digest}")
    return f"{repository}@{digest}"


@dataclass
class CandidatesPruned:
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def candidates_prune(*, finished_before: datetime, dry_run: bool = False) -> CandidatesPruned:
    """Delete from the registry the candidates of runs that ended before `finished_before`.

    A digest another run still needs (running, or ended since) is kept: two runs that built
    the same bytes share one manifest, and deleting it deletes it for both.
    """
    pruned = CandidatesPruned()
    old = LayerBuild.objects.filter(
        role=LayerRole.APP,
        reference__contains=f"/{CANDIDATES_FOLDER}/",
        candidate_removed_at__isnull=True,
        run__finished_at__lt=finished_before,
    )
    for layer in old.order_by("pk")[:1000]:
        still_needed = (
            LayerBuild.objects.filter(reference=layer.reference, candidate_removed_at__isnull=True)
            .exclude(pk=layer.pk)
            .filter(Q(run__finished_at__isnull=True) | Q(run__finished_at__gte=finished_before))
            .exists()
        )
        if still_needed:
            continue
        repository, _, digest = layer.reference.partition("@")
        if not dry_run:
            try:
                manifest_delete(repository, digest)
            except RegistryError as error:
                pruned.problems.append(f"candidate {layer.reference}: {error}")
                continue
            LayerBuild.objects.filter(reference=layer.reference).update(
                candidate_removed_at=timezone.now()
            )
        pruned.removed.append(layer.reference)
    return pruned
