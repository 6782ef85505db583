"""python manage.py linkchat USERNAME SLACK_USER_ID: let a Slack user act as a Dockyard user."""

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api.models import ChatIdentity
from audit.actors import acting_as, cli_actor


class Command(BaseCommand):
    help = "Link a Slack user id to a Dockyard user: chat-ops commands then run with their rights."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("slack_user_id", help="e.g. U024BE7LH (profile > copy member ID)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        # The link is audited by a signal (the admin makes links too); it names this shell.
        with acting_as(cli_actor()):
            identity, _ = ChatIdentity.objects.update_or_create(
                provider="slack", external_id=options["slack_user_id"], defaults={"user": user}
            )
        self.stdout.write(f"Slack user {identity.external_id} acts as {user.get_username()}")
