"""python manage.py prune [--dry-run]: apply retention now (workers also do it on a schedule)."""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from operations.retention import retention_prune


class Command(BaseCommand):
    help = (
        "Delete the logs of finished runs older than DOCKYARD_LOG_RETENTION_DAYS (each "
        "project's newest DOCKYARD_LOG_RETENTION_RUNS runs keep theirs), webhook deliveries "
        "acted on over DOCKYARD_DELIVERY_RETENTION_DAYS ago, containers whose work "
        "is over, and this engine's images of Dockyard's projects older than "
        "DOCKYARD_IMAGE_RETENTION_HOURS that no environment's current, rollback or kept release "
        "and no newest build cache needs, candidates of runs that ended over "
        "DOCKYARD_CANDIDATE_RETENTION_HOURS ago, and this host's workspaces of finished runs. "
        "Runs, stages and events always stay."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="print what would go and remove nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = retention_prune(dry_run=options["dry_run"])
        verb = "would remove" if report.dry_run else "removed"
        self.stdout.write(
            f"logs: {verb} {report.log_chunks_deleted} chunks of {len(report.runs_log_pruned)} "
            f"run(s) finished over {settings.DOCKYARD_LOG_RETENTION_DAYS} days ago"
        )
        self.stdout.write(
            f"webhook deliveries: {verb} {report.deliveries_deleted} received over "
            f"{settings.DOCKYARD_DELIVERY_RETENTION_DAYS} days ago"
        )
        if options["verbosity"] >= 2 and report.runs_log_pruned:
            self.stdout.write(f"  runs (ids): {', '.join(map(str, report.runs_log_pruned))}")
        for container in report.containers_removed:
            self.stdout.write(
                f"container: {verb} {container.id[:12]} {container.name}: {container.reason}"
            )
        for image in report.images_removed:
            names = ", ".join(image.references)
            self.stdout.write(
                f"image: {verb} {image.id.removeprefix('sha256:')[:12]} {names} "
                f"({image.size_bytes / 1e6:.1f} MB)"
            )
        for reference in report.candidates_removed:
            self.stdout.write(f"candidate: {verb} {reference}")
        if report.workspaces_removed:
            runs = ", ".join(map(str, report.workspaces_removed))
            self.stdout.write(f"workspaces: {verb} those of run(s) {runs}")
        if report.bytes_reclaimed is not None:
            self.stdout.write(f"reclaimed {report.bytes_reclaimed / 1e6:.1f} MB")
        if report.problems:
            raise CommandError("; ".join(report.problems))
