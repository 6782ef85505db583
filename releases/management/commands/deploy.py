"""python manage.py deploy SLUG ENV [RELEASE | --rollback]: one call to move an environment."""

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from releases.models import Environment, Release
from releases.services import DeploymentRefused, deployment_request, environment_rollback
from releases.states import DeploymentKind


class Command(BaseCommand):
    help = (
        "Deploy (or promote) a release of a project to one of its environments, or roll the "
        "environment back to its previous good release. Queues the deployment and prints it."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("environment")
        parser.add_argument("release", nargs="?", type=int, help="release number")
        parser.add_argument("--rollback", action="store_true")
        parser.add_argument("--user", help="deploy as this user (their permissions apply)")

    def handle(self, *args: Any, **options: Any) -> None:
        environment = Environment.objects.filter(
            project__slug=options["slug"], name=options["environment"]
        ).first()
        if environment is None:
            raise CommandError(f"no environment {options['environment']!r} in {options['slug']!r}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        actor = cli_actor(user)
        try:
            if options["rollback"]:
                deployment = environment_rollback(environment=environment, user=user, actor=actor)
            else:
                if options["release"] is None:
                    raise CommandError("name a release number, or pass --rollback")
                release = Release.objects.filter(
                    project=environment.project, number=options["release"]
                ).first()
                if release is None:
                    raise CommandError(f"no release {options['release']} of {options['slug']}")
                kind = DeploymentKind.PROMOTE if environment.after else DeploymentKind.DEPLOY
                deployment = deployment_request(
                    environment=environment, release=release, kind=kind, user=user, actor=actor
                )
        except DeploymentRefused as refusal:
            raise CommandError(str(refusal)) from None
        self.stdout.write(
            f"deployment {deployment.pk}: {deployment.kind} of release "
            f"{deployment.release.number} to {environment.name} queued "
            f"(serving on {environment.frontend_url})"
        )
