"""python manage.py setsecret SLUG NAME: store a secret for a project's tests (value on stdin)."""

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from projects.models import Project
from projects.services import ProjectError, project_secret_set


class Command(BaseCommand):
    help = (
        "Set a project secret, read from standard input so it stays out of the shell history. "
        "Tests see it as an environment variable when dockyard.yml lists it under test.secrets; "
        "every log masks it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("name", help="environment variable name, e.g. NPM_TOKEN")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"no project {options['slug']!r}")
        value = sys.stdin.read().rstrip("\n")
        try:
            project_secret_set(
                project=project, name=options["name"], value=value, actor=cli_actor()
            )
        except ProjectError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"secret {options['name']} set for {project.slug}")
