"""python manage.py configdoc: write the settings table of docs/configuration.md again."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from config.settings_reference import (
    SETTINGS_FILE,
    configuration_table,
    document_with_table,
    settings_reference,
)


class Command(BaseCommand):
    help = "Regenerate the settings table in docs/configuration.md from config/settings.py."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")

    def handle(self, *args: Any, **options: Any) -> None:
        document_path = settings.BASE_DIR / "docs" / "configuration.md"
        document = document_path.read_text()
        table = configuration_table(settings_reference(SETTINGS_FILE.read_text()))
        updated = document_with_table(document, table)
        if options["check"]:
            if updated != document:
                self.stderr.write("docs/configuration.md is stale: run python manage.py configdoc")
                raise SystemExit(1)
            return
        document_path.write_text(updated)
        self.stdout.write(f"wrote {document_path}")
