"""The durable-job kernel on a real row (a stage): who may take a job, and what a reap pass
does to a kind that records what it was asked to do."""

from datetime import timedelta

import pytest
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone

from infrastructure.durable_jobs import Take, job_enqueue, job_take, jobs_reap
from pipelines.models import Stage
from tests.factories import make_project, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def job() -> Stage:
    return make_run(make_project()).stages.get(name="checkout")


def test_a_queued_job_is_taken_by_its_first_delivery(job: Stage) -> None:
    sent: list[str] = []
    task_id = job_enqueue(job, send=sent.append)
    assert sent == [task_id]
    assert job_take(job, task_id=task_id) == Take.FIRST
    job.refresh_from_db()
    assert (job.task_id, job.attempts) == (task_id, 1)
    assert job.heartbeat_at is not None and job.worker


def test_a_second_delivery_while_the_carrier_lives_is_a_duplicate(job: Stage) -> None:
    job_take(job, task_id="first")
    assert job_take(job, task_id="second") == Take.DUPLICATE
    job.refresh_from_db()
    assert (job.task_id, job.attempts) == ("first", 1)


@override_settings(DOCKYARD_LOST_AFTER_SECONDS=60)
def test_the_redelivery_of_its_own_task_or_a_silent_carrier_takes_it_again(job: Stage) -> None:
    job_take(job, task_id="first")
    assert job_take(job, task_id="first") == Take.AGAIN
    Stage.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    job.refresh_from_db()
    assert job_take(job, task_id="other") == Take.AGAIN
    job.refresh_from_db()
    assert (job.task_id, job.attempts) == ("other", 3)


class RecordingKind:
    """A kind of job that only notes what the reaper asked of it."""

    model = Stage

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, str]] = []

    def carried(self) -> QuerySet[Stage]:
        return Stage.objects.filter(heartbeat_at__isnull=False)

    def waiting(self) -> QuerySet[Stage]:
        return Stage.objects.filter(heartbeat_at__isnull=True)

    def restart(self, job: Stage, *, why: str, attempt: int) -> None:
        self.asked.append(("restart", job.pk, f"{why}; attempt {attempt}"))

    def give_up(self, job: Stage, *, why: str, attempts: int) -> None:
        self.asked.append(("give_up", job.pk, f"{why}; after {attempts}"))

    def resend(self, job: Stage) -> None:
        self.asked.append(("resend", job.pk, job.task_id))


@override_settings(DOCKYARD_LOST_AFTER_SECONDS=60, DOCKYARD_ATTEMPTS=2)
def test_a_reap_restarts_the_silent_gives_up_on_the_lost_twice_and_resends_the_forgotten() -> None:
    run = make_run(make_project())
    silent, lost_twice, forgotten, held, fresh = run.stages.order_by("position")
    long_ago = timezone.now() - timedelta(minutes=5)
    Stage.objects.filter(pk=silent.pk).update(heartbeat_at=long_ago, attempts=1, worker="w:1")
    Stage.objects.filter(pk=lost_twice.pk).update(heartbeat_at=long_ago, attempts=2, worker="w:2")
    Stage.objects.filter(pk__in=[forgotten.pk, held.pk]).update(queued_at=long_ago)
    Stage.objects.filter(pk=forgotten.pk).update(task_id="lost-with-redis")
    Stage.objects.filter(pk=held.pk).update(task_id="still-in-the-broker")
    Stage.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now(), attempts=1)
    kind = RecordingKind()

    result = jobs_reap(kind, now=timezone.now(), held={"still-in-the-broker"})

    assert (result.restarted, result.given_up, result.resent) == (
        [silent.pk],
        [lost_twice.pk],
        [forgotten.pk],
    )
    assert kind.asked == [
        ("restart", silent.pk, "its worker w:1 stopped answering for 60s; attempt 2"),
        ("give_up", lost_twice.pk, "its worker w:2 stopped answering for 60s; after 2"),
        ("resend", forgotten.pk, "lost-with-redis"),
    ]


def test_without_a_reading_of_the_broker_nothing_is_resent(job: Stage) -> None:
    Stage.objects.filter(pk=job.pk).update(
        queued_at=timezone.now() - timedelta(hours=1), task_id="maybe-lost"
    )
    assert jobs_reap(RecordingKind(), now=timezone.now(), held=None).resent == []
