"""python manage.py reencryptsecrets: rewrite every stored secret under the first encryption key."""

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from config.encrypted_fields import EncryptedTextField, EncryptionKeyError, stored_values_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt webhook secrets, forge tokens, project secrets and notification URLs with "
        "the first key of DOCKYARD_ENCRYPTION_KEYS. Rotate a key: put the new key first, run "
        "this on one machine, then remove the old key everywhere."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        columns = [
            (model._meta.db_table, field.column)
            for model in apps.get_models()
            for field in model._meta.concrete_fields
            if isinstance(field, EncryptedTextField) and field.column
        ]
        try:
            # All or nothing: a value no key opens leaves every row as it was.
            with transaction.atomic():
                for table, column in columns:
                    count = stored_values_rotate(connection, table=table, column=column)
                    self.stdout.write(f"{table}.{column}: {count} re-encrypted")
        except EncryptionKeyError as error:
            raise CommandError(str(error)) from None
