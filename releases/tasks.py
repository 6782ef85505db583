"""Celery tasks of the releases app: thin, id-based, safe to deliver twice."""

from celery import Task, shared_task

from releases.services import deployment_execute, release_from_run


@shared_task(name="releases.deploy", bind=True)
def deploy(self: Task, deployment_id: int) -> None:
    deployment_execute(deployment_id=deployment_id, task_id=self.request.id)


@shared_task(name="releases.release_from_run")
def release_from_run_task(run_id: int) -> None:
    release_from_run(run_id=run_id)
