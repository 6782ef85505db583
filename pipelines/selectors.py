"""Reads for projects and runs."""

from dataclasses import dataclass

from django.db.models import Avg, Count, Q, QuerySet

from pipelines.models import LogChunk, PipelineRun, Stage, TestCase, TestStep
from pipelines.states import RunStatus
from projects.models import BaseDependency, Project


def run_list() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("project").prefetch_related("stages")


def stage_log_text(stage: Stage) -> str:
    return "".join(
        LogChunk.objects.filter(stage=stage).order_by("seq").values_list("text", flat=True)
    )


def run_stage_logs(run: PipelineRun) -> dict[int, str]:
    """Each stage's whole log, by stage id."""
    logs: dict[int, list[str]] = {}
    for stage_id, text in run.log_chunks.order_by("seq").values_list("stage_id", "text"):
        logs.setdefault(stage_id, []).append(text)
    return {stage_id: "".join(parts) for stage_id, parts in logs.items()}


def run_is_cancelled(run_id: int) -> bool:
    return PipelineRun.objects.filter(pk=run_id, status=RunStatus.CANCELLED).exists()


def latest_published_run(project: Project) -> PipelineRun | None:
    """The newest run of the project's default branch that published an image."""
    return (
        PipelineRun.objects.filter(
            project=project,
            ref=f"refs/heads/{project.default_branch}",
            status=RunStatus.SUCCEEDED,
        )
        .exclude(image_digest="")
        .order_by("-number")
        .first()
    )


def project_runs(project: Project, *, branch: str = "", status: str = "") -> QuerySet[PipelineRun]:
    runs = run_list().filter(project=project)
    if branch:
        runs = runs.filter(ref=f"refs/heads/{branch}")
    if status:
        runs = runs.filter(status=status)
    return runs


@dataclass(frozen=True)
class GraphEdge:
    """One project building on another's published image, and how its latest run went."""

    project: Project
    image: str
    latest_run: PipelineRun | None


def project_base_graph(project: Project) -> tuple[list[GraphEdge], list[GraphEdge]]:
    """(what the project builds on, what builds on it), each with the latest default-branch run."""
    builds_on = [
        GraphEdge(
            project=link.base_project,
            image=link.image,
            latest_run=_latest_default_run(link.base_project),
        )
        for link in BaseDependency.objects.filter(project=project).select_related("base_project")
    ]
    used_by = [
        GraphEdge(
            project=link.project, image=link.image, latest_run=_latest_default_run(link.project)
        )
        for link in BaseDependency.objects.filter(base_project=project).select_related("project")
    ]
    return builds_on, used_by


def _latest_default_run(project: Project) -> PipelineRun | None:
    return (
        PipelineRun.objects.filter(project=project, ref=f"refs/heads/{project.default_branch}")
        .order_by("-number")
        .first()
    )


def run_log_after(run_id: int, after: int) -> list[tuple[int, str, str]]:
    """(seq, stage name, text) of the run's log chunks after `after`, in order."""
    return list(
        LogChunk.objects.filter(run_id=run_id, seq__gt=after)
        .order_by("seq")
        .values_list("seq", "stage__name", "text")
    )


# Failures first, then errors, skips, passes: what a reader of a red run looks for.
CASE_STATUS_ORDER = {"failed": 0, "error": 1, "skipped": 2, "passed": 3}


@dataclass(frozen=True)
class RunTests:
    """What a run's test stage found: its steps, the counts, the cases with failures first."""

    steps: list[TestStep]
    counts: dict[str, int]
    cases: list[TestCase]


def run_tests(run: PipelineRun) -> RunTests:
    cases = sorted(
        TestCase.objects.filter(run=run).select_related("step"),
        key=lambda case: (CASE_STATUS_ORDER.get(case.status, 9), case.id),
    )
    counts = {status: 0 for status in CASE_STATUS_ORDER}
    for case in cases:
        counts[case.status] = counts.get(case.status, 0) + 1
    return RunTests(steps=list(run.test_steps.all()), counts=counts, cases=cases)


@dataclass(frozen=True)
class CaseHistory:
    classname: str
    name: str
    runs: int
    failures: int
    average_seconds: float


def project_test_history(
    project: Project, *, recent_runs: int = 20
) -> tuple[list[CaseHistory], list[CaseHistory]]:
    """(slowest, most often failing) test cases over the project's newest runs with reports."""
    run_ids = list(
        PipelineRun.objects.filter(project=project, test_cases__isnull=False)
        .distinct()
        .order_by("-number")
        .values_list("pk", flat=True)[:recent_runs]
    )
    rows = (
        TestCase.objects.filter(run_id__in=run_ids)
        .values("classname", "name")
        .annotate(
            runs=Count("run", distinct=True),
            failures=Count("id", filter=Q(status__in=["failed", "error"])),
            average_seconds=Avg("seconds"),
        )
    )
    history = [CaseHistory(**row) for row in rows]
    slowest = sorted(history, key=lambda case: -case.average_seconds)[:10]
    failing = sorted(
        (case for case in history if case.failures), key=lambda case: (-case.failures, case.name)
    )[:10]
    return slowest, failing
