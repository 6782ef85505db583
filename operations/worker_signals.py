"""The worker's hooks into Celery's life cycle: reconcile at start, then keep house; a deploy
worker also answers the web processes' app log requests."""

import gc
import logging
import os
from typing import TYPE_CHECKING, Any

from celery.signals import celeryd_after_setup, worker_init, worker_ready, worker_shutting_down
from django.conf import settings
from django.db import connection
from django.urls import clear_url_caches

from infrastructure.dispatch import queues_of_roles
from infrastructure.heartbeats import worker_node_name_set
from operations.housekeeping import Housekeeper

if TYPE_CHECKING:
    from releases.app_log_reading import AppLogRelay

logger = logging.getLogger(__name__)
_housekeeper: list[Housekeeper] = []
_relay: list["AppLogRelay"] = []
# The URLconf of a worker: the pages' own, which config.urls mounts at the root.
WORKER_URLCONF = "web.urls"


@worker_init.connect
def _on_worker_init(**kwargs: Any) -> None:
    # A worker links to pages (commit statuses, chat notifications) and serves none. On its
    # first link config.urls would import every view, the API's, the admin's and the schema
    # generator with them (17 MB); the pages' URLconf alone gives the same paths.
    settings.ROOT_URLCONF = WORKER_URLCONF
    clear_url_caches()
    # What was loaded at start lives as long as the worker: frozen, no collection walks it
    # again. A forking pool (--pool processes) shares those pages with its processes until
    # they write to them, and a full collection writes to every object it tracks (each child
    # had its own copy, about 40 MB, bench/soak.py); freezing again before every fork covers
    # children replaced later.
    gc.collect()
    gc.freeze()
    os.register_at_fork(before=gc.freeze)


@celeryd_after_setup.connect
def _on_worker_setup(sender: str, instance: Any, **kwargs: Any) -> None:
    worker_node_name_set(sender)
    # The worker's roles decide its queues, unless it was given some (celery worker -Q).
    queues = instance.app.amqp.queues
    if queues.consume_from is queues:  # all of them: no -Q given
        queues.select(queues_of_roles(settings.DOCKYARD_WORKER_ROLES))
    logger.info(
        "worker roles %s: consuming %s",
        ",".join(settings.DOCKYARD_WORKER_ROLES),
        ", ".join(sorted(queues.consume_from)),
    )


@worker_ready.connect
def _on_worker_ready(**kwargs: Any) -> None:
    if "deploy" in settings.DOCKYARD_WORKER_ROLES and not _relay:
        # Not housekeeping: the web processes read app logs through it (it holds the
        # engines' credentials), whether or not this worker keeps house.
        from releases.app_log_reading import AppLogRelay

        _relay.append(AppLogRelay())
        _relay[0].start()
    if not settings.DOCKYARD_HOUSEKEEPING:
        return
    from operations.reconciliation import startup_reconcile

    try:
        report = startup_reconcile()
        logger.info("start-up reconciliation: %s", report)
    except Exception:
        # A worker that cannot reconcile can still build; the housekeeper tries the proxy
        # again on its next pass.
        logger.exception("start-up reconciliation failed")
    finally:
        # Nothing else on this thread needs it; and a forking pool's processes (--pool
        # processes, replaced after max tasks per child) must not share it.
        connection.close()
    if not _housekeeper:
        _housekeeper.append(Housekeeper())
        _housekeeper[0].start()


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs: Any) -> None:
    while _housekeeper:
        _housekeeper.pop().stop()
    while _relay:
        _relay.pop().stop()
