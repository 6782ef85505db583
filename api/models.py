"""What the API keeps: the answers to idempotent writes, and who a chat user is here."""

from django.conf import settings
from django.db import models

from config.encrypted_fields import EncryptedTextField


class IdempotentRequest(models.Model):
    """A write made with an Idempotency-Key: a retry with the same key gets this answer back."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    # A hash of the request body: the same key with another request is a client's mistake.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    # The answer as JSON, encrypted like every secret: answers carry secrets (a new project's
    # webhook secret, a rotated one) and are kept for replays.
    response = EncryptedTextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique"),
        ]
        indexes = [
            # Expired keys are found and deleted by age (api.idempotency).
            models.Index(fields=["created_at"], name="idempotency_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.method} {self.path} ({self.key})"


class ChatIdentity(models.Model):
    """A chat account (a Slack user id) linked to the Dockyard user it acts as."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_identities"
    )
    provider = models.CharField(max_length=16, default="slack")
    external_id = models.CharField(max_length=100)

    class Meta:
        verbose_name_plural = "chat identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"], name="chat_identity_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.external_id} -> {self.user}"
