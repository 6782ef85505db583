"""The worker's hooks into Celery's life cycle: reconcile at start, then keep house."""

import logging
from typing import Any

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import connection

from operations.housekeeping import Housekeeper

logger = logging.getLogger(__name__)
_housekeeper: list[Housekeeper] = []


@worker_ready.connect
def _on_worker_ready(**kwargs: Any) -> None:
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
        # The pool's processes are forked from this one later (max tasks per child): they
        # must not share its database connection.
        connection.close()
    if not _housekeeper:
        _housekeeper.append(Housekeeper())
        _housekeeper[0].start()


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs: Any) -> None:
    while _housekeeper:
        _housekeeper.pop().stop()
