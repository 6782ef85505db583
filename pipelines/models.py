"""Pipeline runs, their stages, their logs, and the event log of every state change.

Status fields change only through pipelines.services (do_run_transition, do_stage_transition), which
lock the row, check the move against pipelines.states and record it as a RunEvent.
"""

from django.db import models
from django.db.models import Q
from django.urls import reverse

from infrastructure.durable_jobs import DurableJob
from pipelines.states import RunStatus, StageName, StageStatus
from projects.models import Project


class Trigger(models.TextChoices):
    WEBHOOK = "webhook"
    MANUAL = "manual"
    # A base image this project builds on was published anew.
    BASE_UPDATED = "base-updated", "base updated"
    # An image outside the stack its bases build FROM now points at another digest.
    UPSTREAM_MOVED = "upstream-moved", "upstream image moved"


class RunKind(models.TextChoices):
    BRANCH = "branch"
    TAG = "tag"
    # Built and tested, never published or deployed: its code is not on a branch of ours yet.
    PULL_REQUEST = "pull_request", "pull request"


class PipelineRun(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    ref = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=RunKind.choices, default=RunKind.BRANCH)
    pull_request = models.PositiveIntegerField(null=True, blank=True)
    # For a pull request, the branch it would merge into.
    target_branch = models.CharField(max_length=255, blank=True)
    commit_sha = models.CharField(max_length=64)
    commit_message = models.TextField(blank=True)
    # "Name <email>" as git records it; empty until something that knows it (the push, the
    # checkout) says.
    commit_author = models.CharField(max_length=500, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    failed_stage = models.CharField(max_length=16, choices=StageName.choices, blank=True)
    failure_reason = models.TextField(blank=True)
    # The run that caused this one, e.g. the base project's run whose new image it rebuilds on.
    triggered_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="triggered_runs"
    )
    # dockyard.yml as the config stage read it (projects.spec.spec_to_dict): later stages,
    # on whichever worker, build exactly what was validated.
    spec = models.JSONField(null=True, blank=True)
    image_id = models.CharField(max_length=100, blank=True)
    image_repository = models.CharField(max_length=500, blank=True)
    image_reference = models.CharField(max_length=500, blank=True)
    image_digest = models.CharField(max_length=100, blank=True)
    published_tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When retention (operations.retention) deleted the run's log; its stages and events stay.
    log_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="run_number_unique"),
        ]
        indexes = [
            # Pages list runs newest first, all of them or a project's: one page read from
            # the index, not a sort of every run ever made.
            models.Index(fields=["-created_at", "-id"], name="run_newest_first"),
            models.Index(fields=["project", "-created_at", "-id"], name="run_project_newest_first"),
            # /metrics counts runs that ended since its last roll-up, the reaper looks at the
            # last day's passed runs.
            models.Index(fields=["finished_at"], name="run_finished_at"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} #{self.number}"

    def get_absolute_url(self) -> str:
        """The run's page, named as the run is everywhere (`<slug> #<number>`, the {run} tag)."""
        return reverse("run", kwargs={"slug": self.project.slug, "number": self.number})

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def deployable(self) -> bool:
        return self.kind != RunKind.PULL_REQUEST


class Stage(DurableJob):
    """One stage of a run: a durable job (infrastructure.durable_jobs) whose lost worker means
    starting the stage again."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=16, choices=StageName.choices)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=16, choices=StageStatus.choices, default=StageStatus.PENDING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="stage_name_unique"),
        ]
        indexes = [
            # The reaper's look for lost work, every few seconds: the few stages not yet
            # settled, whatever the number of stages ever run.
            models.Index(
                fields=["status"],
                condition=Q(status__in=[StageStatus.PENDING, StageStatus.RUNNING]),
                name="stage_unsettled",
            ),
            # /metrics: stages that ended, and first stages that started, since its roll-up.
            models.Index(fields=["finished_at"], name="stage_finished_at"),
            models.Index(
                fields=["started_at"], condition=Q(position=0), name="stage_first_started_at"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.name}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunEvent(models.Model):
    """One state change of a run or of one of its stages: the timeline and the audit trail."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="events")
    stage = models.ForeignKey(
        Stage, on_delete=models.CASCADE, related_name="events", null=True, blank=True
    )
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            # The reaper looks for recent run-level moves whose commit status went missing.
            models.Index(
                fields=["at"], condition=Q(stage__isnull=True), name="run_event_run_level_at"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_status or 'new'} -> {self.to_status}"


class LogChunk(models.Model):
    """Some lines of a stage's log; `seq` orders a run's chunks so a reader can resume after one."""

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="log_chunks")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="log_chunks")
    # The part of the stage it belongs to (a test step), so that a reader can fold it; steps
    # running side by side write chunks of their own.
    section = models.CharField(max_length=63, blank=True)
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="log_chunk_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.run} log #{self.seq}"


class StepStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TestStep(models.Model):
    """One step of a run's test stage (dockyard.yml test.steps, or the one test.command)."""

    __test__ = False  # not a test case, for pytest

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="test_steps")
    name = models.CharField(max_length=63)
    position = models.PositiveSmallIntegerField()
    # Steps of one group ran side by side.
    group = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    exit_code = models.IntegerField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # What it ran, by digest (the run's candidate): the image published is this one.
    image = models.CharField(max_length=600, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="test_step_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.run} step {self.name}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class CaseStatus(models.TextChoices):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


class TestCase(models.Model):
    """One test case a step's JUnit report names, with its outcome."""

    __test__ = False  # not a test case, for pytest

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="test_cases")
    step = models.ForeignKey(TestStep, on_delete=models.CASCADE, related_name="cases")
    report = models.CharField(max_length=500)
    name = models.CharField(max_length=500)
    classname = models.CharField(max_length=500, blank=True)
    file = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=8, choices=CaseStatus.choices)
    seconds = models.FloatField()
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            # The project page's "slowest" and "most often failing" over recent runs.
            models.Index(fields=["run", "status"], name="test_case_run_status"),
        ]

    def __str__(self) -> str:
        return f"{self.classname}.{self.name} {self.status}"
