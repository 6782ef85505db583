"""The Celery application: settings come from Django's, prefixed CELERY_; the task table and
the queues from infrastructure.dispatch."""

import os

from celery import Celery
from kombu import Queue

from infrastructure.dispatch import QUEUES, celery_task_routes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("dockyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = celery_task_routes()
# A worker started without --queues consumes every queue.
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.autodiscover_tasks()
