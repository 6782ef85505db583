"""python manage.py addproject SLUG --repo URL: register a repository and print its webhook."""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from pipelines.models import Forge
from pipelines.services import ProjectError, project_create


class Command(BaseCommand):
    help = "Register a repository as a Dockyard project and print its webhook URL and secret."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug", help="short name; also the image name in the registry")
        parser.add_argument("--repo", required=True, help="clone URL of the repository")
        parser.add_argument("--secret", help="webhook secret (default: a new random one)")
        parser.add_argument("--forge", default=Forge.GITHUB, choices=Forge.values)
        parser.add_argument("--branch", default="main", help="default branch (default: main)")
        parser.add_argument(
            "--test-command",
            default="",
            help="command run in the image to test it, e.g. 'sh test.sh'",
        )
        parser.add_argument(
            "--test-timeout", type=int, default=600, help="seconds before the test is killed"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            project = project_create(
                slug=options["slug"],
                repository_url=options["repo"],
                forge=options["forge"],
                webhook_secret=options["secret"],
                default_branch=options["branch"],
                test_command=options["test_command"],
                test_timeout=options["test_timeout"],
            )
        except ProjectError as error:
            raise CommandError(str(error)) from None
        webhook_url = settings.PUBLIC_URL + reverse(f"webhook-{project.forge}")
        self.stdout.write(f"project:        {project.slug}")
        self.stdout.write(f"webhook URL:    {webhook_url}")
        self.stdout.write(f"webhook secret: {project.webhook_secret}")
        self.stdout.write("content type:   application/json")
