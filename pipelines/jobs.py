"""Stages as durable jobs (infrastructure.durable_jobs): what the reaper does with one whose
worker was lost (start the stage again from its beginning, or fail the run) and with one whose
message the broker lost (send it again)."""

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from pipelines.models import PipelineRun, RunEvent, Stage
from pipelines.services import do_stage_transition, run_fail, stage_enqueue
from pipelines.states import RunStatus, StageStatus

UNFINISHED_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)


class StageJobs:
    model = Stage

    def carried(self) -> QuerySet[Stage]:
        return Stage.objects.filter(status=StageStatus.RUNNING, run__status__in=UNFINISHED_RUN)

    def waiting(self) -> QuerySet[Stage]:
        return Stage.objects.filter(status=StageStatus.PENDING, run__status__in=UNFINISHED_RUN)

    def restart(self, job: Stage, *, why: str, attempt: int) -> None:
        run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=job.run_id)
        do_stage_transition(
            stage=job,
            to=StageStatus.PENDING,
            reason=f"{why}; starting it again (attempt {attempt} of {settings.DOCKYARD_ATTEMPTS})",
        )
        stage_enqueue(run, job.name)

    def give_up(self, job: Stage, *, why: str, attempts: int) -> None:
        with transaction.atomic():
            # The run first, as every settle of a stage does, then the stage.
            run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=job.run_id)
            stage = Stage.objects.select_for_update().get(pk=job.pk)
            if stage.status != StageStatus.RUNNING:
                return  # settled meanwhile by its own worker or another reaper
            run_fail(run=run, stage=stage, reason=f"{why}; lost {attempts} times, not trying again")

    def resend(self, job: Stage) -> None:
        run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=job.run_id)
        RunEvent.objects.create(
            run=run,
            stage=job,
            from_status=job.status,
            to_status=job.status,
            reason="the broker no longer holds its task (restarted?); sent again",
        )
        stage_enqueue(run, job.name)
