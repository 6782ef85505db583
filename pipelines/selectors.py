"""Reads for projects and runs."""

from dataclasses import dataclass

from django.db.models import Avg, Count, Exists, OuterRef, Prefetch, Q, QuerySet

from builds.models import UpstreamMove
from pipelines.models import CaseStatus, LogChunk, PipelineRun, Stage, TestCase, TestStep, Trigger
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


@dataclass(frozen=True)
class WaveRun:
    """A run an upstream move started, with the rebuilds it started in turn on the projects
    built on its project."""

    run: PipelineRun
    rebuilds: list[PipelineRun]


@dataclass(frozen=True)
class UpstreamWave:
    """An outside image that moved (`FROM debian:12` now another digest), and the runs it set
    off across the projects built on it."""

    move: UpstreamMove
    runs: list[WaveRun]


UPSTREAM_WAVES_SHOWN = 5


def project_upstream_waves(
    project: Project, *, limit: int = UPSTREAM_WAVES_SHOWN
) -> list[UpstreamWave]:
    """The newest upstream moves that rebuilt the project, itself or as the rebuild of a base
    it builds on, each with every run it started and the rebuilds those started: three
    queries. Rebuilds further down a chain of bases are not followed."""
    started = PipelineRun.objects.select_related("project").order_by("project__slug", "number")
    moves = list(
        UpstreamMove.objects.filter(
            Q(runs__project=project) | Q(runs__triggered_runs__project=project)
        )
        .distinct()
        .order_by("-detected_at", "-id")
        .prefetch_related(Prefetch("runs", queryset=started))[:limit]
    )
    direct = [run for move in moves for run in move.runs.all()]
    rebuilds: dict[int | None, list[PipelineRun]] = {}
    if direct:
        for rebuild in started.filter(triggered_by__in=direct, trigger=Trigger.BASE_UPDATED):
            rebuilds.setdefault(rebuild.triggered_by_id, []).append(rebuild)
    return [
        UpstreamWave(
            move=move,
            runs=[WaveRun(run=run, rebuilds=rebuilds.get(run.pk, [])) for run in move.runs.all()],
        )
        for move in moves
    ]


def run_log_after(run_id: int, after: int) -> list[tuple[int, str, str, str]]:
    """(seq, stage name, section, text) of the run's log chunks after `after`, in order; the
    section is the test step a chunk belongs to, "" for the stage's own lines."""
    return list(
        LogChunk.objects.filter(run_id=run_id, seq__gt=after)
        .order_by("seq")
        .values_list("seq", "stage__name", "section", "text")
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
    """Every step and case of the run's tests (the API's answer): two queries."""
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
    """One test case (by class and name) over a project's recent runs."""

    classname: str
    name: str
    runs: int
    failures: int
    average_seconds: float


# How many of a project's newest runs with a test report the history looks back over, and how
# many cases each of its lists names.
TEST_HISTORY_RUNS = 20
TEST_HISTORY_CASES = 10


def project_test_history(
    project: Project, *, recent_runs: int = TEST_HISTORY_RUNS, listed: int = TEST_HISTORY_CASES
) -> tuple[list[CaseHistory], list[CaseHistory]]:
    """(slowest, most often failing) test cases over the project's newest runs with reports:
    two queries, ordered and cut in the database, however large the suite."""
    recent = (
        PipelineRun.objects.filter(project=project)
        .filter(Exists(TestCase.objects.filter(run=OuterRef("pk"))))
        .order_by("-number")
        .values("pk")[:recent_runs]
    )
    cases = (
        TestCase.objects.filter(run_id__in=recent)
        .values("classname", "name")
        .annotate(
            runs=Count("run", distinct=True),
            failures=Count("id", filter=Q(status__in=[CaseStatus.FAILED, CaseStatus.ERROR])),
            average_seconds=Avg("seconds"),
        )
    )
    slowest = cases.order_by("-average_seconds", "classname", "name")[:listed]
    failing = cases.filter(failures__gt=0).order_by("-failures", "classname", "name")[:listed]
    return [CaseHistory(**row) for row in slowest], [CaseHistory(**row) for row in failing]
