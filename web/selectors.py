"""Reads for the pages: what each one shows, in a number of queries that does not grow with
the number of projects, runs or deployments on it."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Case, Count, F, OuterRef, Q, QuerySet, Subquery, Value, When, Window
from django.db.models.functions import RowNumber

from pipelines.models import CaseStatus, LogChunk, PipelineRun, StepStatus, TestCase, TestStep
from pipelines.selectors import CaseHistory, project_test_history
from pipelines.states import RunStatus
from projects.models import Forge, Project
from releases.models import Deployment, DeploymentEvent, Environment, Release
from releases.selectors import environment_history, project_environments, project_releases
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    HOST_FINAL_STATES,
    DeploymentStatus,
    coordinator_steps,
)
from web.log_lines import LogLine, first_error_line, numbered_lines

PROJECTS_PER_DASHBOARD_PAGE = 50
RUNS_PER_DASHBOARD_PROJECT = 3
# Enough to see what a failing tool said last; the whole log is one click away.
FAILURE_BANNER_LINES = 12
FAILED_CASE_STATUSES = (CaseStatus.FAILED, CaseStatus.ERROR)
# A failure message longer than this folds under its first line: one 300-line stack trace must
# not push every other failure off the screen.
MESSAGE_LINES_SHOWN = 12
MESSAGE_CHARACTERS_SHOWN = 1500
# Cases the run page lists, failures and the rest; the API (runs/<id>/tests/) has them all.
FAILURES_LISTED = 200
OTHER_CASES_LISTED = 1000


# --- Runs ------------------------------------------------------------------------------------


def run_page_runs() -> QuerySet[PipelineRun]:
    """Runs with what their page shows of their project and of the run that caused them."""
    return PipelineRun.objects.select_related("project", "triggered_by__project")


def run_by_number(slug: str, number: int) -> PipelineRun:
    """The run a page address names; PipelineRun.DoesNotExist when there is none."""
    return run_page_runs().get(project__slug=slug, number=number)


def run_log_chunks(run: PipelineRun) -> Iterator[tuple[str, str, str]]:
    """(stage name, section, text) of the run's stored log, in order, read in batches."""
    return (
        LogChunk.objects.filter(run=run)
        .order_by("seq")
        .values_list("stage__name", "section", "text")
        .iterator(chunk_size=500)
    )


def run_log_texts(run_id: int, *, after: int, limit: int) -> list[tuple[int, str]]:
    """(seq, text) of up to `limit` chunks of the run's log after `after`: one batch of a
    download."""
    return list(
        LogChunk.objects.filter(run_id=run_id, seq__gt=after)
        .order_by("seq")
        .values_list("seq", "text")[:limit]
    )


@dataclass(frozen=True)
class LogSearch:
    matches: list[LogLine]
    # More lines matched than were sent.
    truncated: bool


def run_log_search(run: PipelineRun, query: str, *, limit: int) -> LogSearch:
    """The first `limit` lines of the stored log whose shown text contains `query`, ignoring
    case."""
    needle = query.casefold()
    matches: list[LogLine] = []
    for line in numbered_lines(run_log_chunks(run)):
        if needle in line.text.casefold():
            if len(matches) == limit:
                return LogSearch(matches=matches, truncated=True)
            matches.append(line)
    return LogSearch(matches=matches, truncated=False)


@dataclass(frozen=True)
class RunFailure:
    """What the failure banner says: where the run failed, why, and what the log said last."""

    stage: str
    reason: str
    last_lines: list[LogLine]
    # Where "jump to the error" goes; None when the failed stage wrote nothing.
    error_line: LogLine | None
    # The test step that failed the run, "" when none did; and how many of the run's test
    # cases failed or erred.
    step: str = ""
    failed_cases: int = 0


def run_failure(run: PipelineRun) -> RunFailure | None:
    """The failure of a failed run, read from its stored log; None for any other run."""
    if run.status != RunStatus.FAILED:
        return None
    # The first failed step in the file's order is the one that failed the run.
    failed_step = (
        run.test_steps.filter(status=StepStatus.FAILED).order_by("position").first()
        if run.failed_stage == "test"
        else None
    )
    step = failed_step.name if failed_step else ""
    lines = numbered_lines(run_log_chunks(run))
    # Every line is read, to number them; only the failed stage's are kept. A run failed
    # outside its stages (their worker lost for good) names none: its log's end is then where
    # it stopped.
    if run.failed_stage:
        stage_lines = [line for line in lines if line.stage == run.failed_stage]
    else:
        stage_lines = list(lines)
    # Steps side by side interleave their output: what the failed one said is in its section.
    step_lines = [line for line in stage_lines if step and line.section == step]
    shown = _without_trailing_blank_lines(step_lines or stage_lines)
    return RunFailure(
        stage=run.failed_stage,
        reason=run.failure_reason,
        last_lines=shown[-FAILURE_BANNER_LINES:],
        error_line=first_error_line(shown),
        step=step,
        failed_cases=run.test_cases.filter(status__in=FAILED_CASE_STATUSES).count()
        if run.failed_stage == "test"
        else 0,
    )


def _without_trailing_blank_lines(lines: list[LogLine]) -> list[LogLine]:
    end = len(lines)
    while end and not lines[end - 1].text.strip():
        end -= 1
    return lines[:end]


@dataclass(frozen=True)
class CaseRow:
    """A failed or errored case as the run page lists it."""

    case: TestCase
    # The message's first line, shown on its own when the whole message is folded.
    headline: str
    message_lines: int
    folded: bool


@dataclass(frozen=True)
class RunTestReport:
    """What the run page shows of a run's tests."""

    # The steps in order, those of one parallel group together.
    step_groups: list[list[TestStep]]
    counts: dict[str, int]
    # Failed, then errored cases.
    failures: list[CaseRow]
    failures_unlisted: int
    # Skipped, then passed.
    others: list[TestCase]
    others_unlisted: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(self.counts.get(status, 0) for status in FAILED_CASE_STATUSES)


# The order the run page lists cases in: what a reader of a red run looks for first.
_CASE_LISTING_ORDER = Case(
    When(status=CaseStatus.FAILED, then=Value(0)),
    When(status=CaseStatus.ERROR, then=Value(1)),
    When(status=CaseStatus.SKIPPED, then=Value(2)),
    default=Value(3),
)


def run_test_report(run: PipelineRun) -> RunTestReport | None:
    """The run's test steps and JUnit cases, failures first; None for a run whose test stage
    recorded no step. Four queries, and only the cases listed are read: a suite of 20,000
    cases is counted in the database, not loaded."""
    steps = list(run.test_steps.all())
    if not steps:
        return None
    statuses = [CaseStatus.FAILED, CaseStatus.ERROR, CaseStatus.SKIPPED, CaseStatus.PASSED]
    counts: dict[str, int] = dict.fromkeys(statuses, 0)
    for row in TestCase.objects.filter(run=run).values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    cases = (
        TestCase.objects.filter(run=run)
        .select_related("step")
        .alias(listing=_CASE_LISTING_ORDER)
        .order_by("listing", "id")
    )
    failed = sum(counts[status] for status in FAILED_CASE_STATUSES)
    others = sum(counts.values()) - failed
    return RunTestReport(
        step_groups=[list(group) for _, group in groupby(steps, key=lambda step: step.group)],
        counts=counts,
        failures=[
            _case_row(case)
            for case in cases.filter(status__in=FAILED_CASE_STATUSES)[:FAILURES_LISTED]
        ],
        failures_unlisted=max(0, failed - FAILURES_LISTED),
        others=list(cases.exclude(status__in=FAILED_CASE_STATUSES)[:OTHER_CASES_LISTED]),
        others_unlisted=max(0, others - OTHER_CASES_LISTED),
    )


def _case_row(case: TestCase) -> CaseRow:
    lines = case.message.strip("\n").splitlines()
    return CaseRow(
        case=case,
        headline=lines[0] if lines else "",
        message_lines=len(lines),
        folded=len(lines) > MESSAGE_LINES_SHOWN or len(case.message) > MESSAGE_CHARACTERS_SHOWN,
    )


@dataclass(frozen=True)
class CaseHistoryRow:
    """A test case over a project's recent runs, with where it last failed."""

    history: CaseHistory
    # As its newest report names it.
    file: str
    last_failure: PipelineRun | None


def project_test_rows(project: Project) -> tuple[list[CaseHistoryRow], list[CaseHistoryRow]]:
    """(slowest, most often failing) test cases of the project's recent runs
    (project_test_history), each with its file and the run it last failed in: four queries."""
    slowest, failing = project_test_history(project)
    wanted = {(case.classname, case.name) for case in [*slowest, *failing]}
    if not wanted:
        return [], []
    named = Q()
    for classname, name in wanted:
        named |= Q(classname=classname, name=name)
    # The newest row of each case (PostgreSQL's DISTINCT ON): its file, and its last failure.
    newest = (
        TestCase.objects.filter(named, run__project=project)
        .order_by("classname", "name", "-run__number", "-id")
        .distinct("classname", "name")
    )
    files = {
        (case.classname, case.name): case.file for case in newest.only("classname", "name", "file")
    }
    failures = {
        (case.classname, case.name): case.run
        for case in newest.filter(status__in=FAILED_CASE_STATUSES).select_related("run")
    }

    def row(case: CaseHistory) -> CaseHistoryRow:
        key = (case.classname, case.name)
        return CaseHistoryRow(history=case, file=files.get(key, ""), last_failure=failures.get(key))

    return [row(case) for case in slowest], [row(case) for case in failing]


@dataclass(frozen=True)
class RunCancellation:
    # "Cancelled by ada", "Cancelled: superseded by #5"
    summary: str
    at: datetime


def run_cancellation(run: PipelineRun) -> RunCancellation | None:
    """Who or what cancelled the run, and when, as its cancelling move recorded it."""
    if run.status != RunStatus.CANCELLED:
        return None
    event = run.events.filter(stage__isnull=True, to_status=RunStatus.CANCELLED).first()
    if event is None:
        return None
    reason = event.reason
    if reason.startswith("cancelled "):
        summary = "Cancelled " + reason.removeprefix("cancelled ")
    else:
        summary = f"Cancelled: {reason}" if reason else "Cancelled"
    return RunCancellation(summary=summary, at=event.at)


# Repository URLs whose host also serves the forge's web pages: https, ssh, scp-like.
_FORGE_URL_PREFIXES = ("https://", "ssh://", "git@")


def commit_url(project: Project, commit_sha: str) -> str:
    """The commit's page on the project's forge; "" for a repository that has none (a local
    path, a plain-http test server)."""
    if not project.repository_url.startswith(_FORGE_URL_PREFIXES):
        return ""
    # "github.com/owner/name", whichever way the URL names it.
    key = project.repository_key
    if project.forge == Forge.GITLAB:
        return f"https://{key}/-/commit/{commit_sha}"
    return f"https://{key}/commit/{commit_sha}"


# --- The dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectOverview:
    project: Project
    latest_runs: list[PipelineRun]
    environments: list[Environment]


@dataclass(frozen=True)
class DashboardPage:
    overviews: list[ProjectOverview]
    # Which page of how many, of how many projects.
    page: Page[Project]


def dashboard_page(
    *, search: str = "", status: str = "", page: str | int | None = 1
) -> DashboardPage:
    """One page of projects, filtered by name and by the status of their latest run, each with
    its latest runs and what its environments serve: four queries, however many projects."""
    # Only what the page shows: the secrets would be decrypted for nothing.
    projects = Project.objects.only("slug").order_by("slug")
    if search:
        projects = projects.filter(slug__icontains=search)
    if status:
        latest_status = (
            PipelineRun.objects.filter(project=OuterRef("pk"))
            .order_by("-created_at", "-id")
            .values("status")[:1]
        )
        projects = projects.annotate(latest_status=Subquery(latest_status)).filter(
            latest_status=status
        )
    listed = Paginator(projects, PROJECTS_PER_DASHBOARD_PAGE).get_page(page)
    on_page = {project.pk: project for project in listed.object_list}
    runs_by_project: dict[int, list[PipelineRun]] = {}
    for run in _latest_runs_of(list(on_page)):
        # The project is at hand: a link to the run needs its slug, not another query.
        run.project = on_page[run.project_id]
        runs_by_project.setdefault(run.project_id, []).append(run)
    environments: dict[int, list[Environment]] = {}
    for environment in Environment.objects.filter(project_id__in=list(on_page)).select_related(
        "current_release"
    ):
        environments.setdefault(environment.project_id, []).append(environment)
    overviews = [
        ProjectOverview(
            project=project,
            latest_runs=runs_by_project.get(project.pk, []),
            environments=environments.get(project.pk, []),
        )
        for project in listed.object_list
    ]
    return DashboardPage(overviews=overviews, page=listed)


def _latest_runs_of(project_ids: list[int]) -> list[PipelineRun]:
    """Each project's newest runs, newest first, in one query."""
    if not project_ids:
        return []
    runs = list(_latest_runs_query(project_ids))
    runs.sort(key=lambda run: (run.created_at, run.pk), reverse=True)
    return runs


def _latest_runs_query(project_ids: list[int]) -> QuerySet[PipelineRun]:
    newest_first = PipelineRun.objects.order_by("-created_at", "-id")
    if connection.features.supports_slicing_ordering_in_compound:
        # One short read of the (project, created_at, id) index per project: the cost
        # follows the page, not how many runs the projects ever had.
        each = [
            newest_first.filter(project_id=pk)[:RUNS_PER_DASHBOARD_PROJECT] for pk in project_ids
        ]
        return each[0].union(*each[1:], all=True) if len(each) > 1 else each[0]
    # SQLite cannot order and limit inside a UNION: number each project's runs instead.
    return (
        PipelineRun.objects.filter(project_id__in=project_ids)
        .annotate(
            recency=Window(
                RowNumber(),
                partition_by=F("project_id"),
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(recency__lte=RUNS_PER_DASHBOARD_PROJECT)
        .order_by("project_id", "recency")
    )


# --- Releases and environments ---------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseRow:
    release: Release
    commit_url: str
    # The environments it serves in now.
    serving_in: list[Environment]


def project_release_rows(project: Project, *, limit: int = 20) -> list[ReleaseRow]:
    """The project's newest releases with their run and where each serves."""
    serving: dict[int, list[Environment]] = {}
    for environment in project_environments(project):
        if environment.current_release_id is not None:
            serving.setdefault(environment.current_release_id, []).append(environment)
    return [
        ReleaseRow(
            release=release,
            commit_url=commit_url(project, release.commit_sha),
            serving_in=serving.get(release.pk, []),
        )
        for release in project_releases(project).select_related("run")[:limit]
    ]


@dataclass(frozen=True)
class DeploymentStep:
    """One step a deployment went through: when it began, how long it took, what it said."""

    status: str
    at: datetime | None
    took: timedelta | None
    detail: str
    # "done", "current" (under way), "failed", or "waiting" (not reached yet)
    state: str


@dataclass(frozen=True)
class HostRow:
    """One host's part of a deployment: where it got, and its own steps."""

    host: str
    address: str
    status: str
    steps: list[DeploymentStep]
    failure_reason: str = ""
    container_log: str = ""


@dataclass(frozen=True)
class DeploymentRow:
    deployment: Deployment
    steps: list[DeploymentStep] = field(default_factory=list)
    hosts: list[HostRow] = field(default_factory=list)


def deployment_steps(deployment: Deployment, events: list[DeploymentEvent]) -> list[DeploymentStep]:
    """The deployment's own steps from its events (those of no host), and, while it runs, the
    steps still to come."""
    own = [event for event in events if event.host_id is None]
    steps = _steps(own, final=deployment.status in DEPLOYMENT_FINAL_STATES)
    if deployment.status not in DEPLOYMENT_FINAL_STATES:
        reached = {event.to_status for event in own}
        has_release_command = bool((deployment.release.deploy_config or {}).get("release_command"))
        steps.extend(
            DeploymentStep(status=status, at=None, took=None, detail="", state="waiting")
            for status in coordinator_steps(deployment.kind)
            if status not in reached
            and (status != DeploymentStatus.RELEASING or has_release_command)
        )
    return steps


def deployment_hosts(deployment: Deployment, events: list[DeploymentEvent]) -> list[HostRow]:
    """Each host's part of the deployment with its steps, in the order hosts go."""
    rows = []
    for target in sorted(deployment.host_deployments.all(), key=lambda t: t.position):
        own = [event for event in events if event.host_id == target.host_id]
        rows.append(
            HostRow(
                host=target.host.name,
                address=target.host.address,
                status=target.status,
                steps=_steps(own, final=target.status in HOST_FINAL_STATES),
                failure_reason=target.failure_reason,
                container_log=target.container_log,
            )
        )
    return rows


def _steps(events: list[DeploymentEvent], *, final: bool) -> list[DeploymentStep]:
    steps: list[DeploymentStep] = []
    for index, event in enumerate(events):
        following = events[index + 1] if index + 1 < len(events) else None
        if event.to_status == DeploymentStatus.FAILED:
            state = "failed"
        elif following is not None or final:
            state = "done"
        else:
            state = "current"
        steps.append(
            DeploymentStep(
                status=event.to_status,
                at=event.at,
                took=following.at - event.at if following is not None else None,
                detail=event.detail,
                state=state,
            )
        )
    return steps


def deployment_row(deployment: Deployment) -> DeploymentRow:
    """A deployment with its own steps and each host's (events and hosts prefetched)."""
    events = sorted(deployment.events.all(), key=lambda event: (event.at, event.pk))
    return DeploymentRow(
        deployment=deployment,
        steps=deployment_steps(deployment, events),
        hosts=deployment_hosts(deployment, events),
    )


def environment_history_rows(environment: Environment, *, limit: int = 100) -> list[DeploymentRow]:
    """The environment's deployments, newest first, each with its steps and its hosts'."""
    deployments = environment_history(environment).select_related("release__run")
    return [
        deployment_row(deployment)
        for deployment in deployments.prefetch_related("host_deployments__host")[:limit]
    ]


def active_deployment_row(environment: Environment) -> DeploymentRow | None:
    """The deployment under way in the environment, with its steps and its hosts'."""
    active = (
        environment.deployments.exclude(status__in=DEPLOYMENT_FINAL_STATES)
        .select_related("release", "previous_release")
        .prefetch_related("events", "host_deployments__host")
        .first()
    )
    return deployment_row(active) if active is not None else None
