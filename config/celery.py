"""The Celery application: settings come from Django's, prefixed CELERY_; the task table and
the queues from infrastructure.dispatch."""

import os

from celery import Celery
from kombu import Queue

from infrastructure.celery_wakeup import HubWokenByPoolThreads
from infrastructure.dispatch import QUEUES, celery_task_routes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Celery's Django fixup runs every system check as a worker starts, and the URL checks import
# every view: the REST framework, the OpenAPI schema generator and django.test with it, 22 MB
# a worker never uses. `manage.py migrate` runs the checks where Dockyard is installed.
os.environ.setdefault("CELERY_SKIP_CHECKS", "true")

app = Celery("dockyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = celery_task_routes()
# A worker started without --queues consumes every queue.
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.autodiscover_tasks()
# A pool thread's acknowledgement wakes the worker's event loop (infrastructure/celery_wakeup.py).
app.steps["consumer"].add(HubWokenByPoolThreads)
