"""Celery tasks of the releases app: thin, id-based, safe to deliver twice."""

from celery import Task, shared_task

from infrastructure import dispatch
from releases.executor import deployment_execute, host_deployment_execute
from releases.tools import deploy_tools


@shared_task(name=dispatch.DEPLOY.name, bind=True)
def deploy(self: Task, deployment_id: int) -> None:
    deployment_execute(deployment_id=deployment_id, task_id=self.request.id, tools=deploy_tools())


@shared_task(name=dispatch.DEPLOY_HOST.name, bind=True)
def deploy_host(self: Task, host_deployment_id: int) -> None:
    host_deployment_execute(
        host_deployment_id=host_deployment_id, task_id=self.request.id, tools=deploy_tools()
    )
