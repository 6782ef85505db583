"""Projects changed through Django's own machinery (the admin, a shell), into the audit log.

Adding a project, pointing it at another repository, changing a secret or a grant, deleting
it: the admin saves the model directly, so signals are the one place every change passes. The
actor comes from the context the request (or command) set (audit.actors).
"""

from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from audit.models import AuditAction
from audit.services import audit_record
from infrastructure.repository_urls import shown
from projects.models import Project, ProjectSecret

# Changed through Project.save() (the admin, the API, addproject).
PROJECT_SECRETS = {
    "webhook_secret": AuditAction.WEBHOOK_SECRET_CHANGED,
    "forge_token": AuditAction.FORGE_TOKEN_CHANGED,
    "repository_credentials": AuditAction.REPOSITORY_CREDENTIALS_CHANGED,
}


# What operators grant a project; an entry says what it was and what it became.
PROJECT_PERMISSIONS = ("publish_repositories", "test_network_allowed")


@receiver(pre_save, sender=Project, dispatch_uid="audit.project_before")
def project_before(sender: type[models.Model], instance: Project, **kwargs: Any) -> None:
    instance._audit_before = (  # type: ignore[attr-defined]
        sender._default_manager.filter(pk=instance.pk)
        .values("repository_url", *PROJECT_SECRETS, *PROJECT_PERMISSIONS)
        .first()
        if instance.pk is not None and not kwargs.get("raw")
        else None
    )


@receiver(post_save, sender=Project, dispatch_uid="audit.project_after")
def project_after(
    sender: type[models.Model], instance: Project, created: bool, **kwargs: Any
) -> None:
    if kwargs.get("raw"):
        return
    if created:
        audit_record(
            action=AuditAction.PROJECT_CREATED,
            target=instance,
            detail={
                "repository": shown(instance.repository_url),
                "forge": instance.forge,
                # Whether each secret is set; never its value.
                **{field: bool(getattr(instance, field)) for field in PROJECT_SECRETS},
            },
        )
        return
    before = getattr(instance, "_audit_before", None)
    if before is None:
        return
    if before["repository_url"] != instance.repository_url:
        audit_record(
            action=AuditAction.PROJECT_REPOSITORY_CHANGED,
            target=instance,
            detail={
                "from": shown(before["repository_url"]),
                "to": shown(instance.repository_url),
            },
        )
    changed = {
        field: {"from": before[field], "to": getattr(instance, field)}
        for field in PROJECT_PERMISSIONS
        if before[field] != getattr(instance, field)
    }
    if changed:
        audit_record(
            action=AuditAction.PROJECT_PERMISSIONS_CHANGED, target=instance, detail=changed
        )
    for field, action in PROJECT_SECRETS.items():
        value = getattr(instance, field)
        if before[field] != value:
            # That it changed, and whether one is set now; never the value.
            audit_record(action=action, target=instance, detail={"set": bool(value)})


@receiver(post_delete, sender=Project, dispatch_uid="audit.project_deleted")
def project_deleted(sender: type[models.Model], instance: Project, **kwargs: Any) -> None:
    audit_record(
        action=AuditAction.PROJECT_DELETED,
        target=instance,
        detail={"repository": shown(instance.repository_url)},
    )


@receiver(post_delete, sender=ProjectSecret, dispatch_uid="audit.project_secret_deleted")
def project_secret_deleted(
    sender: type[models.Model], instance: ProjectSecret, **kwargs: Any
) -> None:
    audit_record(
        action=AuditAction.PROJECT_SECRET_DELETED,
        target=instance.project,
        detail={"name": instance.name},
    )
