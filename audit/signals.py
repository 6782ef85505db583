"""Changes the admin (or a shell) makes through Django's own machinery, into the audit log.

A user's staff/superuser/active flags, groups and permissions, and API tokens are edited by
Django's admin, DRF's token command and our management commands,
none of which goes through a service of ours: signals are the one place all of them pass. The
receivers only work out what changed and hand it to audit_record; the actor comes from the
context the request (or command) set.

Changes made with QuerySet.update() send no signal; nothing in Dockyard changes these fields
that way.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token, TokenProxy

from audit.models import AuditAction
from audit.services import audit_record

User = get_user_model()

USER_FLAGS = ("is_staff", "is_superuser", "is_active")
# Flags worth an entry when a user is created with them: every new user is active.
ELEVATED_FLAGS = ("is_staff", "is_superuser")

# Each audited many-to-many relation: the action, and its field (owner side: the entry's target).
# Apps add theirs with audit_many_to_many (releases: who may deploy to an environment).
M2M_RELATIONS: dict[type[models.Model], tuple[AuditAction, Any]] = {
    User.groups.through: (AuditAction.USER_GROUPS_CHANGED, User.groups.field),
    User.user_permissions.through: (
        AuditAction.USER_PERMISSIONS_CHANGED,
        User.user_permissions.field,
    ),
    Group.permissions.through: (AuditAction.GROUP_PERMISSIONS_CHANGED, Group.permissions.field),
}


def _member_name(member: models.Model) -> str:
    if isinstance(member, Permission):
        return f"{member.content_type.app_label}.{member.codename}"
    if isinstance(member, User):
        return str(member.get_username())
    return str(member)


def m2m_relation_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    **kwargs: Any,
) -> None:
    """One entry per owner (environment, user, group) naming the members added or removed."""
    if action not in {"post_add", "post_remove", "pre_clear"}:
        return
    audit_action, field = M2M_RELATIONS[sender]
    owner_column, member_column = field.m2m_column_name(), field.m2m_reverse_name()
    if action == "pre_clear":
        # Clearing sends no primary keys: read what is about to go while it is still there.
        mine, theirs = (member_column, owner_column) if reverse else (owner_column, member_column)
        pk_set = set(
            sender._default_manager.filter(**{mine: instance.pk}).values_list(theirs, flat=True)
        )
    if not pk_set:
        return
    others = model._default_manager.filter(pk__in=pk_set).order_by("pk")
    if model is Permission:
        others = others.select_related("content_type")
    owners, members = (list(others), [instance]) if reverse else ([instance], list(others))
    change = "added" if action == "post_add" else "removed"
    for owner in owners:
        audit_record(
            action=audit_action,
            target=owner,
            detail={change: sorted(_member_name(member) for member in members)},
        )


def audit_many_to_many(through: type[models.Model], action: AuditAction, field: Any) -> None:
    """Record every change of the many-to-many relation `through` (owner side: `field`)."""
    M2M_RELATIONS[through] = (action, field)
    m2m_changed.connect(
        m2m_relation_changed, sender=through, dispatch_uid=f"audit.m2m.{through._meta.label}"
    )


for _through, (_action, _field) in list(M2M_RELATIONS.items()):
    audit_many_to_many(_through, _action, _field)


@receiver(pre_save, sender=User, dispatch_uid="audit.user_flags_before")
def user_flags_before(sender: type[models.Model], instance: Any, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    # A login saves last_login alone: no query for it.
    if kwargs.get("raw") or (
        update_fields is not None and not set(update_fields) & set(USER_FLAGS)
    ):
        instance._audit_flags_before = "unchanged"
        return
    instance._audit_flags_before = (
        sender._default_manager.filter(pk=instance.pk).values(*USER_FLAGS).first()
        if instance.pk is not None
        else None
    )


@receiver(post_save, sender=User, dispatch_uid="audit.user_flags_after")
def user_flags_after(
    sender: type[models.Model], instance: Any, created: bool, **kwargs: Any
) -> None:
    before = getattr(instance, "_audit_flags_before", None)
    if before == "unchanged" or kwargs.get("raw"):
        return
    if created or before is None:
        changed = {
            flag: {"from": None, "to": True} for flag in ELEVATED_FLAGS if getattr(instance, flag)
        }
    else:
        changed = {
            flag: {"from": before[flag], "to": getattr(instance, flag)}
            for flag in USER_FLAGS
            if before[flag] != getattr(instance, flag)
        }
    if changed:
        detail = {**changed, "created": True} if created else changed
        audit_record(action=AuditAction.USER_FLAGS_CHANGED, target=instance, detail=detail)


# DRF's admin makes tokens through its proxy model, whose saves are signalled as the proxy's.
@receiver(post_save, sender=Token, dispatch_uid="audit.token_issued")
@receiver(post_save, sender=TokenProxy, dispatch_uid="audit.token_proxy_issued")
def token_issued(sender: type[models.Model], instance: Token, created: bool, **kwargs: Any) -> None:
    # The key is the credential: it is never recorded, not even in part.
    if created and not kwargs.get("raw"):
        audit_record(action=AuditAction.API_TOKEN_ISSUED, target=instance.user)


@receiver(post_delete, sender=Token, dispatch_uid="audit.token_revoked")
def token_revoked(sender: type[models.Model], instance: Token, **kwargs: Any) -> None:
    audit_record(action=AuditAction.API_TOKEN_REVOKED, target=instance.user)
