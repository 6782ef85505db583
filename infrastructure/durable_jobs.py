"""The durable-job kernel: work that a broker message starts, a worker carries, and the
database remembers, so that losing either the message or the worker loses nothing.

A durable job is a row (a stage of a run, a deployment, one host's part of a deployment) with
the fields of `DurableJob`. Its life, whatever its kind:

- `job_enqueue`: a new task id, sent once the transaction commits; `queued_at` says when.
- `job_take`: a delivery claims the job under its row lock; a duplicate delivery (another live
  carrier has it) does nothing, a redelivery after its carrier died takes it again.
- `job_heartbeat`: while a worker carries it, a side thread refreshes `heartbeat_at`.
- `jobs_reap`: a job whose heartbeat went silent lost its worker: started again (each kind says
  what that means: a stage from its start, a deployment at its step) until its attempts run
  out, then given up; a job waiting for a message the broker no longer holds is sent again.

Kinds say only what is particular to them (`JobKind`); everything else is written once, here.
"""

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol, TypeVar

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from infrastructure.heartbeats import heartbeat, heartbeat_is_fresh, worker_name

logger = logging.getLogger(__name__)


class DurableJob(models.Model):
    """The fields every durable job has; a kind adds its own state machine on top."""

    # The Celery task sent for the job (while it waits), then the one carrying it. A
    # redelivery of that same task means its worker died mid-job; another task id means a
    # duplicate message, which must not run it twice.
    task_id = models.CharField(max_length=255, blank=True)
    # When the task was (last) sent: a waiting job whose message the broker lost (Redis
    # restarted) is sent again once this is old enough.
    queued_at = models.DateTimeField(null=True, blank=True)
    # Refreshed by the carrying worker; a stale one means the worker is gone. None while the
    # job waits for a worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    # How many times a worker has taken the job: bounded, so a job that keeps killing its
    # worker ends instead of looping.
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True


Job = TypeVar("Job", bound=DurableJob)


class Take(Enum):
    """What a delivery found when it claimed its job."""

    # Nobody carried the job yet: this delivery starts it.
    FIRST = "first"
    # Its carrier was lost (its own task redelivered, or the owner's heartbeat went silent):
    # this delivery starts it again.
    AGAIN = "again"
    # A live carrier has it, or another task owns it: this delivery does nothing.
    DUPLICATE = "duplicate"


def job_enqueue(job: DurableJob, *, send: Callable[[str], None], new_phase: bool = False) -> str:
    """Give `job` a new task id, note when it was sent and that nobody carries it yet, and
    send it with `send(task_id)` (a dispatch.queue_* call: sent on commit). Returns the id.

    `new_phase`: the job goes on to work of another kind (a deployment that finishes after
    its hosts switched), whose attempts count afresh.
    """
    task_id = str(uuid.uuid4())
    job.task_id, job.queued_at, job.heartbeat_at = task_id, timezone.now(), None
    fields: dict[str, object] = {
        "task_id": task_id,
        "queued_at": job.queued_at,
        "heartbeat_at": None,
    }
    if new_phase:
        job.attempts = fields["attempts"] = 0
    type(job)._default_manager.filter(pk=job.pk).update(**fields)
    send(task_id)
    return task_id


def job_take(job: DurableJob, *, task_id: str) -> Take:
    """Claim `job` for the delivery of `task_id`: note the carrier, count the attempt.

    Call inside a transaction holding the job's row lock. A DUPLICATE changes nothing.
    """
    carried = job.heartbeat_at is not None
    if carried and job.task_id != task_id and heartbeat_is_fresh(job.heartbeat_at):
        return Take.DUPLICATE
    verdict = Take.AGAIN if carried else Take.FIRST
    job.task_id, job.worker = task_id, worker_name()
    job.heartbeat_at, job.attempts = timezone.now(), job.attempts + 1
    job.save(update_fields=["task_id", "worker", "heartbeat_at", "attempts"])
    return verdict


def job_out_of_attempts(job: DurableJob) -> bool:
    """Has `job` been taken more often than DOCKYARD_ATTEMPTS allows (each earlier carrier
    lost mid-job: killed, out of memory, its machine gone)?"""
    return job.attempts > settings.DOCKYARD_ATTEMPTS


@contextmanager
def job_heartbeat(job: DurableJob) -> Iterator[None]:
    """Refresh the job's heartbeat from a side thread while the block runs."""
    with heartbeat(type(job), job.pk):
        yield


class JobKind(Protocol[Job]):
    """One kind of durable job, as the reaper sees it."""

    model: type[Job]

    def carried(self) -> QuerySet[Job]:
        """The jobs a live worker should be carrying now."""

    def waiting(self) -> QuerySet[Job]:
        """The jobs whose task should be in the broker, waiting for a worker."""

    def restart(self, job: Job, *, why: str, attempt: int) -> None:
        """Its worker was lost (`why`) and attempts remain: start attempt number `attempt` (of
        DOCKYARD_ATTEMPTS). Called holding its lock."""

    def give_up(self, job: Job, *, why: str, attempts: int) -> None:
        """Its worker was lost (`why`) for the `attempts`-th time, its last: end it. Called
        without its lock held, so that it can take the locks it needs in its own order; it
        must check again that it still may."""

    def resend(self, job: Job) -> None:
        """The broker lost its message: record that and send it again. Called holding its
        lock."""


@dataclass
class KindReap:
    """What one pass did to one kind of job, by id."""

    restarted: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)


def jobs_reap(kind: JobKind[Job], *, now: datetime, held: set[str] | None) -> KindReap:
    """One pass over one kind: settle jobs whose worker went silent, send again the ones whose
    message the broker lost (`held`: the task ids the broker holds; None when it could not be
    read, which skips that half).

    Safe with several reapers at once: each job is taken under its row lock (SKIP LOCKED) and
    looked at again under it.
    """
    lost_after = settings.DOCKYARD_LOST_AFTER_SECONDS
    cutoff = now - timedelta(seconds=lost_after)
    result = KindReap()
    for job_id in _ids(kind.carried().filter(_silent(cutoff))):
        with transaction.atomic():
            job = _locked(kind, job_id, kind.carried().filter(_silent(cutoff)))
            if job is None:
                continue
            why = f"its worker {job.worker or '(unknown)'} stopped answering for {lost_after:g}s"
            if job.attempts < settings.DOCKYARD_ATTEMPTS:
                kind.restart(job, why=why, attempt=job.attempts + 1)
                result.restarted.append(job_id)
                continue
        kind.give_up(job, why=why, attempts=job.attempts)
        result.given_up.append(job_id)
    if held is None:
        return result
    waiting = kind.waiting().filter(queued_at__lt=cutoff).exclude(task_id="").order_by()
    for job_id, task_id in waiting.values_list("pk", "task_id"):
        if task_id in held:
            continue
        with transaction.atomic():
            job = _locked(kind, job_id, waiting)
            if job is None or job.task_id in held:
                continue
            kind.resend(job)
            result.resent.append(job_id)
    return result


def _silent(cutoff: datetime) -> Q:
    # A carried job with no heartbeat at all predates heartbeats: silent once sent long ago.
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, queued_at__lt=cutoff)


def _locked(kind: JobKind[Job], job_id: int, still: QuerySet[Job]) -> Job | None:
    """The job under its row lock if no other reaper has it and it still qualifies."""
    job = kind.model._default_manager.select_for_update(skip_locked=True).filter(pk=job_id).first()
    if job is None or not still.filter(pk=job_id).exists():
        return None
    return job


def _ids(jobs: QuerySet[Job]) -> Iterable[int]:
    # No order: sorting by the model's default (a join, for stages) would cost more than the look.
    return list(jobs.order_by().values_list("pk", flat=True))
