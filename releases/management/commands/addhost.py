"""python manage.py addhost NAME --address IP [--engine URL] [--environment SLUG/ENV ...]"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from releases.hosts import HostRefused, environment_hosts_set, host_save
from releases.models import Environment


class Command(BaseCommand):
    help = (
        "Add a deploy host (or change one): its Docker engine (unix://, ssh://user@host, "
        "tcp://host:2376 with TLS) and the address its apps and HAProxy listen on; optionally "
        "add it to environments (SLUG/ENV). Credentials stay with the workers (their ~/.ssh, "
        "DOCKER_CERT_PATH)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--address", required=True)
        parser.add_argument(
            "--engine", default="", help="engine URL (default: the deploy worker's own)"
        )
        parser.add_argument(
            "--environment",
            action="append",
            default=[],
            metavar="SLUG/ENV",
            help="add the host to this environment (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        environments = [self._environment(label) for label in options["environment"]]
        actor = cli_actor(None)
        try:
            host, added = host_save(
                name=options["name"],
                engine_url=options["engine"],
                address=options["address"],
                actor=actor,
            )
            for environment in environments:
                environment_hosts_set(
                    environment=environment,
                    hosts=[*environment.hosts.all(), host],
                    max_parallel=environment.max_parallel,
                    actor=actor,
                )
        except HostRefused as refusal:
            raise CommandError(str(refusal)) from None
        engine = host.engine_url or "the deploy worker's own"
        self.stdout.write(
            f"host {host.name} {'added' if added else 'saved'}: engine {engine}, "
            f"apps on {host.address}"
        )
        for environment in environments:
            names = ", ".join(environment.hosts.values_list("name", flat=True))
            self.stdout.write(f"{environment} runs on {names}")

    def _environment(self, label: str) -> Environment:
        slug, _, name = label.partition("/")
        environment = Environment.objects.filter(project__slug=slug, name=name).first()
        if environment is None:
            raise CommandError(f"no environment {label!r} (write it SLUG/ENV)")
        return environment
