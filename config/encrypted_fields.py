"""Secrets encrypted at rest: a model field that keeps its value as a Fernet token in the database.

Fernet is AES-128-CBC with an HMAC-SHA256 over it, so a value changed in the database fails to
decrypt rather than decrypting to something else. Keys come from DOCKYARD_ENCRYPTION_KEYS (the
first encrypts, every one decrypts: add a new key in front, run `manage.py reencryptsecrets`,
then drop the old one). A dump of the database, or a backup of it, no longer holds the webhook
secrets, forge tokens and project secrets in clear; the keys live elsewhere (the environment or
a mounted file).

Randomised by design: the same value encrypts differently each time, so an encrypted column
cannot be searched; its lookups are refused (see EncryptedTextField.get_lookup).
"""

import base64
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import forms
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import Exact, IsNull

KEYS_SETTING = "DOCKYARD_ENCRYPTION_KEYS"
# Changing it would make every value encrypted under the derived key unreadable.
_DERIVATION_INFO = b"dockyard encrypted fields v1"


class EncryptionKeyError(ImproperlyConfigured):
    """A stored value does not decrypt with any configured key: a key is missing or wrong."""


def encrypt_text(value: str) -> str:
    """The Fernet token of `value` under the first key."""
    return _cipher().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt_text(token: str, *, what: str = "a stored secret") -> str:
    """The value a Fernet token holds; EncryptionKeyError naming the setting if no key opens it."""
    try:
        return _cipher().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise EncryptionKeyError(_undecryptable(what)) from None


def is_encrypted(value: str) -> bool:
    """True when one of the configured keys decrypts `value` (the data migration's test)."""
    try:
        _cipher().decrypt(value.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def derived_key(secret_key: str) -> str:
    """The Fernet key derived from Django's SECRET_KEY (HKDF-SHA256)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION_INFO).derive(
        secret_key.encode("utf-8")
    )
    return base64.urlsafe_b64encode(key).decode("ascii")


def stored_values_encrypt(connection: BaseDatabaseWrapper, *, table: str, column: str) -> int:
    """Encrypt a column's plain values in place (data migrations); returns how many changed.

    Safe to repeat: values that already decrypt are left alone.
    """
    return _stored_values_rewrite(
        connection,
        table,
        column,
        lambda value: None if is_encrypted(value) else encrypt_text(value),
    )


def stored_values_decrypt(connection: BaseDatabaseWrapper, *, table: str, column: str) -> int:
    """Put a column's values back in clear (reversing a data migration); returns how many."""
    return _stored_values_rewrite(
        connection,
        table,
        column,
        lambda value: decrypt_text(value) if is_encrypted(value) else None,
    )


def stored_values_rotate(connection: BaseDatabaseWrapper, *, table: str, column: str) -> int:
    """Re-encrypt a column's values under the first key (after a key rotation)."""

    def rotated(value: str) -> str:
        try:
            return _cipher().rotate(value.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise EncryptionKeyError(_undecryptable(f"{table}.{column}")) from None

    return _stored_values_rewrite(connection, table, column, rotated)


class EncryptedTextField(models.TextField):
    """Text that is a Fernet token in the database and plain text in Python.

    The empty string is stored as it is: it only says "none set", and `forge_token=""` style
    checks keep working. Values are encrypted on every write (save, update, bulk_update) and
    decrypted on every read (instances, values(), values_list()).
    """

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        prepared = super().get_db_prep_save(value, connection)
        if isinstance(prepared, str) and prepared:
            return encrypt_text(prepared)
        return prepared

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if not value:
            return value
        return decrypt_text(value, what=f"{self.model.__name__}.{self.name}")

    def get_lookup(self, lookup_name: str) -> Any:
        # Equality with a value would compare it with a randomised token and never match:
        # refuse rather than answer "nothing found". "Is it set?" stays possible.
        if lookup_name == "isnull":
            return IsNull
        if lookup_name == "exact":
            return _EmptyOnlyExact
        raise FieldError(
            f"{self.model.__name__}.{self.name} is encrypted and cannot be searched "
            f"('{lookup_name}' lookup); look rows up by another field"
        )

    def formfield(self, **kwargs: Any) -> Any:
        # One line, like the CharFields these were: secrets and tokens are not prose.
        return super().formfield(**{"widget": forms.TextInput, **kwargs})


class _EmptyOnlyExact(Exact):
    def get_prep_lookup(self) -> Any:
        if self.rhs not in ("", None):
            field = self.lhs.output_field
            raise FieldError(
                f"{field.model.__name__}.{field.name} is encrypted and cannot be compared with "
                "a value; only with '' (not set)"
            )
        return super().get_prep_lookup()


def _stored_values_rewrite(
    connection: BaseDatabaseWrapper, table: str, column: str, rewrite: Callable[[str], str | None]
) -> int:
    # Raw SQL: the ORM would decrypt (and fail on) the very values being converted.
    quote = connection.ops.quote_name
    changed = 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {quote(column)} FROM {quote(table)}")
        for pk, value in cursor.fetchall():
            new_value = rewrite(value) if value else None
            if new_value is not None:
                cursor.execute(
                    f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE id = %s",
                    [new_value, pk],
                )
                changed += 1
    return changed


def _cipher() -> MultiFernet:
    return _multi_fernet(tuple(getattr(settings, KEYS_SETTING, ())), settings.SECRET_KEY)


@lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    # Without configured keys, one is derived from SECRET_KEY so that development, tests and a
    # first install work with nothing to set up. Production should set its own keys: then a
    # leaked SECRET_KEY no longer opens the secrets, and SECRET_KEY can change without losing
    # them. The derived key stays last, decrypt-only, so values written before the keys were
    # configured stay readable until `manage.py reencryptsecrets` rewrites them.
    fernets = [Fernet(key) for key in keys]
    fernets.append(Fernet(derived_key(secret_key)))
    return MultiFernet(fernets)


def _undecryptable(what: str) -> str:
    keys = tuple(getattr(settings, KEYS_SETTING, ()))
    if keys:
        tried = (
            f"any of the {len(keys)} key(s) in {KEYS_SETTING} or the key derived from SECRET_KEY"
        )
    else:
        tried = f"the key derived from SECRET_KEY ({KEYS_SETTING} is not set)"
    return (
        f"{what} cannot be decrypted with {tried}: it was encrypted with a key that is no "
        f"longer configured; put that key back in {KEYS_SETTING} (any position after the first)"
    )
