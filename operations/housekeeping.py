"""The housekeeper: a thread in each worker's main process that keeps Dockyard honest.

A thread of the worker rather than a task: it must run while every pool slot is busy with a
long build, and it needs no beat process or schedule file of its own. What it does depends on
the worker's roles (DOCKYARD_WORKER_ROLES), and each chore is of one of two scopes:

- the installation's (the reaper, upstream checks, pruning logs and candidates): one worker at
  a time, whichever takes the chore's lock (infrastructure.cluster_locks) once it is due; when
  it last ran, where, and how it ended is in ChoreRecord, shared by all;
- this host's (what finished runs left on its engine and disk, its images): every worker, for
  itself. Every host's HAProxy is kept by an installation chore of the deploy workers: any of
  them can drive any host through its engine.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from infrastructure.cluster_locks import cluster_lock
from infrastructure.heartbeats import worker_name
from operations.models import ChoreRecord

logger = logging.getLogger(__name__)

INSTALLATION = "installation"
HOST = "host"


@dataclass(frozen=True)
class Chore:
    name: str
    scope: str
    # Seconds between two runs of it (0: never).
    every: Callable[[], float]
    work: Callable[[], object]
    # The worker role it needs, or None for any worker.
    role: str | None = None
    # A host chore that waits a full period after the worker starts (pruning: not while a
    # fleet restarts at once).
    delay_first: bool = False


def worker_chores() -> list[Chore]:
    """Every chore, whichever worker may run it."""
    # Imported here: this module loads with the app registry, before models are ready.
    from operations.reaper import lost_deployments_reap, lost_runs_reap
    from operations.retention import host_prune, installation_prune
    from operations.upstream_watch import upstream_check

    def reap_interval() -> float:
        return settings.DOCKYARD_REAP_INTERVAL_SECONDS

    def prune_interval() -> float:
        return settings.DOCKYARD_PRUNE_INTERVAL_SECONDS

    return [
        Chore("reap runs", INSTALLATION, reap_interval, lost_runs_reap),
        Chore("reap deployments", INSTALLATION, reap_interval, lost_deployments_reap, "deploy"),
        Chore(
            "check upstream images",
            INSTALLATION,
            lambda: settings.DOCKYARD_UPSTREAM_CHECK_SECONDS,
            upstream_check,
        ),
        Chore("prune logs and candidates", INSTALLATION, prune_interval, installation_prune),
        Chore("keep the proxies", INSTALLATION, reap_interval, proxies_keep, role="deploy"),
        Chore(
            "sample request metrics",
            INSTALLATION,
            lambda: settings.DOCKYARD_TRAFFIC_SAMPLE_SECONDS,
            traffic_sample,
            role="deploy",
        ),
        Chore("sweep finished work", HOST, reap_interval, finished_work_sweep),
        Chore("prune this host", HOST, prune_interval, host_prune, delay_first=True),
    ]


def finished_work_sweep() -> str:
    """Remove what work that is over left on this host: its containers on this host's engine,
    its workspaces on this host's disk (the stages of one run may have run on several hosts;
    the run's own clean-up task reaches only the one that takes it)."""
    from operations.reconciliation import finished_work_containers_remove
    from pipelines.workspace import workspaces_of_finished_runs_remove

    containers = finished_work_containers_remove()
    workspaces = workspaces_of_finished_runs_remove()
    if not containers and not workspaces:
        return ""
    return f"removed {len(containers)} container(s), the workspaces of runs {workspaces}"


def proxies_keep() -> object:
    """Put every host's HAProxy back as the database says (started, or made again, if it is
    down or gone), from whichever deploy worker holds the chore: any can drive any host."""
    from releases.proxy import proxies_reconcile
    from releases.tools import deploy_tools

    return proxies_reconcile(deploy_tools())


def traffic_sample() -> object:
    """Read every host's HAProxy request log into request metrics, and judge the releases
    being watched on them (releases.traffic), from whichever deploy worker holds the chore."""
    from releases.tools import kept_deploy_tools
    from releases.traffic import traffic_pass

    return traffic_pass(kept_deploy_tools())


class Housekeeper(threading.Thread):
    def __init__(self, roles: tuple[str, ...] | None = None) -> None:
        super().__init__(name="dockyard-housekeeper", daemon=True)
        self.stopping = threading.Event()
        roles = settings.DOCKYARD_WORKER_ROLES if roles is None else roles
        self.chores = [
            chore for chore in worker_chores() if chore.role is None or chore.role in roles
        ]
        # A host chore's next turn, by name (monotonic seconds).
        now = time.monotonic()
        self._next_turn = {
            chore.name: now + chore.every() if chore.delay_first else now for chore in self.chores
        }

    def run(self) -> None:
        try:
            while not self.stopping.wait(self._tick()):
                # As Django does around a request: a connection broken since the last pass
                # (the database restarted) is replaced.
                close_old_connections()
                self.one_pass()
        finally:
            connection.close()

    def _tick(self) -> float:
        # As often as the most frequent chore wants (request metrics: every few seconds).
        periods = [chore.every() for chore in self.chores if chore.every() > 0]
        return min([settings.DOCKYARD_REAP_INTERVAL_SECONDS, *periods])

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)

    def one_pass(self) -> list[str]:
        """Run every chore that is due; the names of those this worker ran."""
        ran = []
        for chore in self.chores:
            if chore.every() <= 0 or self.stopping.is_set():
                continue
            try:
                if chore.scope == HOST:
                    done = self._host_chore(chore)
                else:
                    done = self._installation_chore(chore)
            except Exception:
                # One failed chore must not stop the others, or the next pass.
                logger.exception("housekeeping: %s failed", chore.name)
                connection.close()
                continue
            if done:
                ran.append(chore.name)
        return ran

    def _host_chore(self, chore: Chore) -> bool:
        if time.monotonic() < self._next_turn[chore.name]:
            return False
        self._next_turn[chore.name] = time.monotonic() + chore.every()
        outcome = chore.work()
        if outcome:
            logger.info("housekeeping: %s: %s", chore.name, outcome)
        return True

    def _installation_chore(self, chore: Chore) -> bool:
        with cluster_lock(f"chore:{chore.name}") as held:
            if not held:
                return False  # another worker is at it right now
            record, _ = ChoreRecord.objects.get_or_create(name=chore.name)
            due_after = timezone.now() - timedelta(seconds=chore.every())
            if record.last_started_at is not None and record.last_started_at > due_after:
                return False  # a worker did it recently
            record.last_started_at, record.last_worker = timezone.now(), worker_name()
            record.save(update_fields=["last_started_at", "last_worker"])
            logger.info("housekeeping: %s began", chore.name)
            error = ""
            try:
                outcome = chore.work()
            except Exception as failure:
                error = repr(failure)
                raise
            finally:
                logger.info("housekeeping: %s ended", chore.name)
                try:
                    ChoreRecord.objects.filter(pk=record.pk).update(
                        last_finished_at=timezone.now(), last_error=error[:2000]
                    )
                except DatabaseError:
                    # The chore's own failure (the database went away) is the one to report.
                    logger.warning("housekeeping: could not record how %s ended", chore.name)
            if outcome:
                logger.info("housekeeping: %s: %s", chore.name, outcome)
            return True
