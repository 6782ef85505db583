"""python manage.py createtoken USERNAME: issue a user's API token and print it, once."""

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api.tokens import api_token_issue


class Command(BaseCommand):
    help = (
        "Issue a new API token for a user (any earlier one stops working) and print it. "
        "Only a digest is stored: the token cannot be shown again."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        self.stdout.write(api_token_issue(user=user))
