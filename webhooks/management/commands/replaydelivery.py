"""python manage.py replaydelivery ID | --unacted: act on stored webhook deliveries again."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from webhooks.models import Delivery
from webhooks.services import deliveries_unacted, delivery_act, delivery_replay


class Command(BaseCommand):
    help = (
        "Replay a stored delivery as a new one (e.g. after fixing a project's filters), or act "
        "on deliveries that were stored but never acted on because a process died."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("delivery", nargs="?", type=int, help="the stored delivery's id")
        parser.add_argument(
            "--unacted", action="store_true", help="act on every delivery still waiting"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["unacted"]:
            waiting = deliveries_unacted()
            for delivery in waiting:
                outcome = delivery_act(delivery_id=delivery.pk)
                self.stdout.write(f"delivery {delivery.pk}: {outcome.message}")
            self.stdout.write(f"{len(waiting)} delivery(ies) acted on")
            return
        if options["delivery"] is None:
            raise CommandError("name a delivery id, or pass --unacted")
        original = Delivery.objects.filter(pk=options["delivery"]).first()
        if original is None:
            raise CommandError(f"no delivery {options['delivery']}")
        replay, outcome = delivery_replay(delivery=original)
        self.stdout.write(f"replayed delivery {original.pk} as {replay.pk}: {outcome.message}")
