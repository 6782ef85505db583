"""Writing the audit log."""

from collections.abc import Mapping
from typing import Any

from django.db import models

from audit.actors import Actor, current_actor
from audit.models import AuditAction, AuditEntry


def audit_record(
    *,
    action: AuditAction,
    target: models.Model,
    detail: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> AuditEntry:
    """Record that `actor` (by default whoever the context names) did `action` to `target`.

    Call inside the transaction that makes the change, so that the entry exists exactly when
    the change does. `detail` must never hold a secret's value.
    """
    who = actor if actor is not None else current_actor()
    return AuditEntry.objects.create(
        actor_user_id=who.user.pk if who.user is not None else None,
        actor=who.label[:200],
        action=action,
        target_type=target._meta.model_name or type(target).__name__.lower(),
        target_id=str(target.pk),
        target_label=str(target)[:300],
        detail=dict(detail or {}),
    )
