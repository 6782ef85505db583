"""Idempotency-Key on every API write: a retry with the same key gets the first answer, once.

The key is stored (unique per user) before the write runs, so of two concurrent copies only
one runs; the other waits for its answer. Answers of 5xx are forgotten, so the client can
retry a write that failed on our side. A key is remembered DOCKYARD_IDEMPOTENCY_RETENTION_HOURS
(a retry comes within minutes); each keyed write deletes a few expired ones, so the table
holds about one retention period's writes however long Dockyard runs.
"""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ApiConflict, IdempotencyKeyReused
from api.models import IdempotentRequest

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
WAIT_FOR_FIRST_SECONDS = 15
EXPIRED_PER_WRITE = 20

ViewMethod = Callable[..., Response]


def idempotent(view_method: ViewMethod) -> ViewMethod:
    """Decorate a viewset's write action (create, cancel, deploy, ...)."""

    @wraps(view_method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if not key:
            return view_method(view, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationError({HEADER: f"use at most {MAX_KEY_LENGTH} printable characters"})
        fingerprint = hashlib.sha256(
            json.dumps(request.data, sort_keys=True, default=str).encode()
        ).hexdigest()
        _expired_records_delete(user=request.user, key=key)
        try:
            with transaction.atomic():
                record = IdempotentRequest.objects.create(
                    user=request.user,
                    key=key,
                    method=request.method or "",
                    path=request.path,
                    fingerprint=fingerprint,
                )
        except IntegrityError:
            return _first_answer(request, key, fingerprint)
        try:
            response = view_method(view, request, *args, **kwargs)
        except Exception:
            # Nothing was answered: the client may retry with the same key.
            record.delete()
            raise
        if response.status_code >= 500:
            record.delete()
        else:
            record.status_code = response.status_code
            record.response = json.dumps(response.data, cls=DjangoJSONEncoder)
            record.save(update_fields=["status_code", "response"])
        return response

    return wrapper


def _expired_records_delete(*, user: Any, key: str) -> None:
    """This key, if it is remembered from too long ago (it is a new request now), and a few
    other expired ones: more than a write makes, so none pile up."""
    cutoff = timezone.now() - timedelta(hours=settings.DOCKYARD_IDEMPOTENCY_RETENTION_HOURS)
    expired = IdempotentRequest.objects.filter(created_at__lt=cutoff)
    expired.filter(user=user, key=key).delete()
    batch = list(expired.order_by().values_list("pk", flat=True)[:EXPIRED_PER_WRITE])
    if batch:
        IdempotentRequest.objects.filter(pk__in=batch).delete()


def _first_answer(request: Request, key: str, fingerprint: str) -> Response:
    deadline = time.monotonic() + WAIT_FOR_FIRST_SECONDS
    while True:
        first = IdempotentRequest.objects.filter(user=request.user, key=key).first()
        if first is None:
            raise ApiConflict("the first request with this Idempotency-Key failed; send it again")
        if (first.method, first.path, first.fingerprint) != (
            request.method,
            request.path,
            fingerprint,
        ):
            raise IdempotencyKeyReused()
        if first.status_code is not None:
            answer = json.loads(first.response) if first.response else None
            response = Response(answer, status=first.status_code)
            response["Idempotent-Replayed"] = "true"
            return response
        if time.monotonic() > deadline:
            raise ApiConflict("a request with this Idempotency-Key is still being processed")
        time.sleep(0.05)
