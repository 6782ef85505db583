"""The housekeeper: a thread in each worker's main process that keeps Dockyard honest.

Every DOCKYARD_REAP_INTERVAL_SECONDS it runs the reaper and puts the proxy back as the
database says; every DOCKYARD_PRUNE_INTERVAL_SECONDS it prunes what retention allows. A
thread of the worker rather than a task: it must run while every pool slot is busy with a
long build, and it needs no beat process or schedule file of its own.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


class Housekeeper(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="dockyard-housekeeper", daemon=True)
        self.stopping = threading.Event()
        self._next_prune = time.monotonic() + settings.DOCKYARD_PRUNE_INTERVAL_SECONDS

    def run(self) -> None:
        try:
            while not self.stopping.wait(settings.DOCKYARD_REAP_INTERVAL_SECONDS):
                # As Django does around a request: a connection broken since the last pass
                # (the database restarted) is replaced.
                close_old_connections()
                self.one_pass()
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)

    def one_pass(self) -> None:
        # Imported here: this module loads with the app registry, before models are ready.
        from operations.reaper import lost_work_reap
        from releases.proxy import proxy_reconcile
        from releases.tools import deploy_tools

        def proxy_chore() -> None:
            proxy_reconcile(deploy_tools().proxy())

        for name, chore in (("reaper", lost_work_reap), ("proxy", proxy_chore)):
            try:
                chore()
            except Exception:
                # One failed chore must not stop the others, or the next pass.
                logger.exception("housekeeping: the %s failed", name)
                connection.close()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + settings.DOCKYARD_PRUNE_INTERVAL_SECONDS
            try:
                from operations.retention import retention_prune

                logger.info("housekeeping: %s", retention_prune())
            except Exception:
                logger.exception("housekeeping: pruning failed")
                connection.close()
