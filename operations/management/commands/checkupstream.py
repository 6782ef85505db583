"""python manage.py checkupstream: ask now whether an upstream image moved (workers also do it
every DOCKYARD_UPSTREAM_CHECK_SECONDS) and rebuild the projects it moved under."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from operations.upstream_watch import upstream_check


class Command(BaseCommand):
    help = (
        "Ask each registry where the images outside every stack (`FROM debian:12`) point now; "
        "every project whose newest default-branch build used another digest gets a run of "
        "its default branch."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = upstream_check()
        for reference, digest in report.checked.items():
            self.stdout.write(f"{reference}: {digest}")
        for reference, slugs in report.moved.items():
            rebuilt = ", ".join(slugs) if slugs else "already rebuilt"
            self.stdout.write(f"{reference} moved: {rebuilt}")
        if not report.checked and not report.problems:
            self.stdout.write("no project builds on an image outside its stack")
        if report.problems:
            raise CommandError("; ".join(report.problems))
