"""python manage.py addnotification SLUG URL: tell a chat channel about a project's runs."""

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator

from projects.models import Project
from webhooks.models import NotificationEndpoint


class Command(BaseCommand):
    help = (
        "Send a project's finished runs and deployments to an incoming-webhook URL "
        "(Slack, Mattermost, or anything that takes JSON)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("url")
        parser.add_argument("--no-runs", action="store_true", help="only deployments")
        parser.add_argument("--no-deployments", action="store_true", help="only runs")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"no project {options['slug']!r}")
        try:
            URLValidator(schemes=["http", "https"])(options["url"])
        except ValidationError:
            raise CommandError(f"{options['url']!r} is not an http(s) URL") from None
        endpoint = NotificationEndpoint.objects.create(
            project=project,
            url=options["url"],
            on_runs=not options["no_runs"],
            on_deployments=not options["no_deployments"],
        )
        self.stdout.write(f"notifications for {project.slug} go to {endpoint.url}")
