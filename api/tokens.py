"""API tokens, kept as digests: the database never holds a token that would work.

DRF's Token model stores its key in clear and finds it by that key, so a database dump or
backup would hand out every user's API access (operators' included: deploys, secrets). Here the
row's `key` is the SHA-256 of the token (cut to the column's 40 hex characters, 160 bits): the
token is shown once, when issued, and a request's token is hashed before the look-up. The
look-up then compares digests, so its timing says nothing about the token either. A plain hash
suffices: tokens are 256 random bits, nothing to guess a preimage from.

The model stays DRF's (its admin, its signals, the audit trail built on them keep working);
only how keys are made and checked changes. A token made by `drf_create_token` is stored in
clear and therefore never authenticates: use `manage.py createtoken`.
"""

import hashlib
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

_DIGEST_LENGTH = 40  # Token.key's max_length


def token_digest(token: str) -> str:
    """What the database keeps of `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:_DIGEST_LENGTH]


def api_token_issue(*, user: AbstractBaseUser) -> str:
    """Give `user` a new API token, revoking any earlier one; returns it (shown only now)."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        Token.objects.create(user=user, key=token_digest(token))
    return token


class HashedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`, checked against the stored digest."""

    def authenticate_credentials(self, key: str) -> Any:
        return super().authenticate_credentials(token_digest(key))
