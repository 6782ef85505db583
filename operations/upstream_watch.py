"""The upstream watch: images outside every stack are the roots of the base graph.

"There is a new OpenSSL: which apps use it?" A base that builds `FROM debian:12` records the
digest that reference resolved to (LayerBuild.upstream). The watch asks each reference's
registry where its tag points now; every project whose newest default-branch build used
another digest gets a run of its default branch, recorded on an UpstreamMove with the runs it
started (the graph page shows that wave). References pinned by digest never move and are not
asked. A project is rebuilt once per move, whatever its run's outcome.

Run by one worker at a time every DOCKYARD_UPSTREAM_CHECK_SECONDS (operations.housekeeping),
or now with `manage.py checkupstream`.
"""

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery, Value
from django.db.models.functions import Concat

from builds.dockerfile import reference_parts
from builds.models import LayerBuild, LayerUpstream, UpstreamMove
from infrastructure.registry import RegistryError, upstream_digest
from pipelines.models import PipelineRun, Trigger
from pipelines.services import default_branch_rebuild
from projects.models import Project

logger = logging.getLogger(__name__)


@dataclass
class UpstreamReport:
    # reference -> its digest now, for each reference asked.
    checked: dict[str, str] = field(default_factory=dict)
    # The moves found this time, and the runs each started (by project slug).
    moved: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.moved or self.problems)

    def __str__(self) -> str:
        moved = "; ".join(
            f"{reference} moved: rebuilt {', '.join(slugs) or 'nothing'}"
            for reference, slugs in self.moved.items()
        )
        text = f"checked {len(self.checked)} upstream image(s)"
        if moved:
            text += f"; {moved}"
        if self.problems:
            text += f"; problems: {'; '.join(self.problems)}"
        return text


def upstream_uses() -> dict[str, dict[int, str]]:
    """{reference: {project id: digest}} for what each project's newest default-branch build
    built its bases on."""
    newest = (
        PipelineRun.objects.filter(
            project=OuterRef("pk"),
            ref=Concat(Value("refs/heads/"), OuterRef("default_branch")),
        )
        .filter(Exists(LayerBuild.objects.filter(run=OuterRef("pk"))))
        .order_by("-number")
        .values("pk")[:1]
    )
    run_ids = Project.objects.annotate(newest=Subquery(newest)).values("newest")
    rows = LayerUpstream.objects.filter(layer__run_id__in=run_ids).values_list(
        "reference", "layer__run__project_id", "digest"
    )
    uses: dict[str, dict[int, str]] = defaultdict(dict)
    for reference, project_id, digest in rows:
        uses[reference][project_id] = digest
    return dict(uses)


def upstream_check() -> UpstreamReport:
    """Ask where each upstream reference points now; rebuild the projects it moved under."""
    report = UpstreamReport()
    for reference, used in sorted(upstream_uses().items()):
        repository, tag = reference_parts(reference)
        if tag.startswith("sha256:"):
            continue  # pinned by digest: it cannot move
        try:
            current = upstream_digest(repository, tag)
        except RegistryError as error:
            report.problems.append(f"{reference}: {error}")
            continue
        if current is None:
            report.problems.append(f"{reference}: its registry no longer has that tag")
            continue
        report.checked[reference] = current
        stale = sorted(project_id for project_id, digest in used.items() if digest != current)
        if stale:
            old = Counter(used[project_id] for project_id in stale).most_common(1)[0][0]
            report.moved[reference] = _projects_rebuild(reference, old, current, stale)
    if report:
        logger.warning("upstream watch: %s", report)
    return report


def _projects_rebuild(reference: str, old: str, new: str, project_ids: list[int]) -> list[str]:
    """Start a run for each project not yet rebuilt for this move; their slugs."""
    with transaction.atomic():
        move, _ = UpstreamMove.objects.get_or_create(
            reference=reference, new_digest=new, defaults={"old_digest": old}
        )
        already = set(move.runs.values_list("project_id", flat=True))
    started = []
    for project in Project.objects.filter(pk__in=project_ids).exclude(pk__in=already):
        run = default_branch_rebuild(
            project=project,
            why=f"rebuild: {reference} moved to {new[:19]}",
            trigger=Trigger.UPSTREAM_MOVED,
        )
        if run is not None:
            move.runs.add(run)
            started.append(project.slug)
    return started
