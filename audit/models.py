"""The audit log: who deployed, promoted or rolled back, who added a project or changed where it
builds from, and who changed a permission or a secret.

Entries are written by audit.services.audit_record only and never change afterwards. A secret's
value never goes into one: an entry says that a secret changed, not what it became.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    # Deployments, by the kind the deployment was requested as.
    DEPLOY = "deployment.deploy", "deploy requested"
    AUTO_DEPLOY = "deployment.auto", "auto-deploy requested"
    PROMOTE = "deployment.promote", "promotion requested"
    ROLLBACK = "deployment.rollback", "rollback requested"
    RESTART = "deployment.restart", "restart requested"
    STOP = "deployment.stop", "stop requested"
    START = "deployment.start", "start requested"
    SCALE = "deployment.scale", "scaling requested"
    # A release's watch saw too many errors and rolled it back by itself.
    WATCH_ROLLBACK = "deployment.watch_rollback", "release rolled back by its watch"
    # Permissions.
    DEPLOYERS_CHANGED = "environment.deployers", "environment deployers changed"
    USER_FLAGS_CHANGED = "user.flags", "user staff/superuser/active changed"
    USER_GROUPS_CHANGED = "user.groups", "user groups changed"
    USER_PERMISSIONS_CHANGED = "user.permissions", "user permissions changed"
    GROUP_PERMISSIONS_CHANGED = "group.permissions", "group permissions changed"
    API_TOKEN_ISSUED = "api_token.issued", "API token issued"
    API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"
    CHAT_IDENTITY_LINKED = "chat_identity.linked", "chat account linked"
    CHAT_IDENTITY_UNLINKED = "chat_identity.unlinked", "chat account unlinked"
    # Hosts: where environments run, and so where their secrets go.
    HOST_ADDED = "host.added", "host added"
    HOST_CHANGED = "host.changed", "host changed"
    ENVIRONMENT_HOSTS_CHANGED = "environment.hosts", "environment hosts changed"
    # Projects: whoever adds one runs its builds on the worker's Docker engine.
    PROJECT_CREATED = "project.created", "project created"
    PROJECT_REPOSITORY_CHANGED = "project.repository", "project repository changed"
    PROJECT_DELETED = "project.deleted", "project deleted"
    # What the project may do beyond its own namespace and a network-less test.
    PROJECT_PERMISSIONS_CHANGED = "project.permissions", "project permissions changed"
    # Secrets.
    PROJECT_SECRET_SET = "secret.set", "project secret set"
    PROJECT_SECRET_DELETED = "secret.deleted", "project secret deleted"
    WEBHOOK_SECRET_CHANGED = "webhook_secret.changed", "webhook secret changed"
    FORGE_TOKEN_CHANGED = "forge_token.changed", "forge token changed"
    REPOSITORY_CREDENTIALS_CHANGED = (
        "repository_credentials.changed",
        "repository credentials changed",
    )


class AuditEntry(models.Model):
    at = models.DateTimeField(default=timezone.now, editable=False)
    # Kept when the user is deleted: the label still names them.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
    )
    # How and as whom: "api-token:alice", "chat:slack:U024BE7LH", "admin:alice", "system".
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    # What was acted on: "environment", "user", "group", "project"; its primary key as text;
    # and a name a person reads ("web/production", "alice"), kept if the target is deleted.
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64)
    target_label = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_entry_at"),
            models.Index(fields=["action", "-at"], name="audit_entry_action_at"),
            models.Index(fields=["target_type", "target_id", "-at"], name="audit_entry_target_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target_label}"
