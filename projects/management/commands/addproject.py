"""python manage.py addproject SLUG --repo URL: register a repository and print its webhook."""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from projects.models import Forge
from projects.services import ProjectError, project_create


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
        parser.add_argument(
            "--branches",
            default="*",
            help="globs of branches whose pushes run, e.g. 'main release/*'",
        )
        parser.add_argument("--tags", default="*", help="globs of tags whose pushes run")
        parser.add_argument(
            "--forge-api-url",
            default="",
            help="API base for commit statuses (default https://api.github.com or "
            "https://gitlab.com/api/v4)",
        )
        parser.add_argument(
            "--forge-repo", default="", help="owner/name on the forge (default: from --repo)"
        )
        parser.add_argument(
            "--forge-token",
            default="",
            help="token allowed to set commit statuses (none: no statuses are sent)",
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
                branch_filter=options["branches"],
                tag_filter=options["tags"],
                forge_api_url=options["forge_api_url"],
                forge_repository=options["forge_repo"],
                forge_token=options["forge_token"],
            )
        except ProjectError as error:
            raise CommandError(str(error)) from None
        webhook_url = settings.PUBLIC_URL + reverse(f"webhook-{project.forge}")
        self.stdout.write(f"project:        {project.slug}")
        self.stdout.write(f"webhook URL:    {webhook_url}")
        self.stdout.write(f"webhook secret: {project.webhook_secret}")
        self.stdout.write("content type:   application/json")
        statuses = (
            f"to {project.forge_repository}" if project.forge_token else "off (no --forge-token)"
        )
        self.stdout.write(f"commit status:  {statuses}")
