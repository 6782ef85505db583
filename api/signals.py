"""Chat accounts linked and unlinked (linkchat, the admin), into the audit log."""

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from api.models import ChatIdentity
from audit.models import AuditAction
from audit.services import audit_record


@receiver(pre_save, sender=ChatIdentity, dispatch_uid="audit.chat_identity_before")
def chat_identity_before(sender: type[models.Model], instance: ChatIdentity, **kwargs: Any) -> None:
    previous = (
        sender._default_manager.filter(pk=instance.pk).select_related("user").first()
        if instance.pk is not None
        else None
    )
    instance._audit_previous_user = previous.user if previous is not None else None  # type: ignore[attr-defined]


@receiver(post_save, sender=ChatIdentity, dispatch_uid="audit.chat_identity_linked")
def chat_identity_linked(sender: type[models.Model], instance: ChatIdentity, **kwargs: Any) -> None:
    previous = getattr(instance, "_audit_previous_user", None)
    if kwargs.get("raw") or (previous is not None and previous.pk == instance.user_id):
        return
    account = {"provider": instance.provider, "external_id": instance.external_id}
    if previous is not None:
        audit_record(
            action=AuditAction.CHAT_IDENTITY_UNLINKED,
            target=previous,
            detail={**account, "now_linked_to": instance.user.get_username()},
        )
    audit_record(action=AuditAction.CHAT_IDENTITY_LINKED, target=instance.user, detail=account)


@receiver(post_delete, sender=ChatIdentity, dispatch_uid="audit.chat_identity_unlinked")
def chat_identity_unlinked(
    sender: type[models.Model], instance: ChatIdentity, **kwargs: Any
) -> None:
    audit_record(
        action=AuditAction.CHAT_IDENTITY_UNLINKED,
        target=instance.user,
        detail={"provider": instance.provider, "external_id": instance.external_id},
    )
