"""python manage.py workerhealth: exit 0 when a Celery worker answers a ping, 1 when none does."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from monitoring.health import BrokerUnreachable, workers_answering


class Command(BaseCommand):
    help = (
        "Ask the Celery workers (or the one named) to answer a ping through the broker; exit 0 "
        "when one answers, 1 when none does. For a container's healthcheck: "
        "workerhealth --destination celery@$HOSTNAME."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--destination",
            action="append",
            help="a worker's name (celery@host); may repeat; default any worker",
        )
        parser.add_argument(
            "--timeout", type=float, default=2.0, help="seconds to wait for answers (default 2)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workers = workers_answering(
                timeout=options["timeout"], destination=options["destination"]
            )
        except BrokerUnreachable as error:
            raise CommandError(str(error)) from None
        if not workers:
            raise CommandError(f"no worker answered within {options['timeout']}s")
        self.stdout.write("\n".join(workers))
