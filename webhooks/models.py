"""The inbox: every accepted delivery, stored before it is acted on."""

from django.core.validators import URLValidator
from django.db import models

from config.encrypted_fields import EncryptedTextField
from infrastructure.outgoing_webhooks import endpoint_shown
from pipelines.models import PipelineRun
from projects.models import Forge, Project


class Delivery(models.Model):
    forge = models.CharField(max_length=16, choices=Forge.choices)
    # The forge's id for the delivery; a redelivery carries the same one.
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100)
    project = models.ForeignKey(
        Project, on_delete=models.SET_NULL, null=True, related_name="deliveries"
    )
    # Request headers without secrets, tokens or signatures.
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    status_code = models.PositiveSmallIntegerField(null=True)
    outcome = models.TextField(blank=True)
    run = models.ForeignKey(
        PipelineRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    acted_at = models.DateTimeField(null=True, blank=True)
    # A replay is a delivery of its own, acted on afresh; it points at the one it repeats.
    replay_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["forge", "delivery_id"], name="delivery_unique"),
        ]
        indexes = [
            # A project's page lists its newest deliveries; retention deletes the oldest.
            models.Index(fields=["project", "-received_at", "-id"], name="delivery_project_newest"),
            models.Index(fields=["received_at"], name="delivery_received_at"),
            # /metrics counts deliveries acted on since its roll-up, and those still waiting.
            models.Index(fields=["acted_at"], name="delivery_acted_at"),
        ]

    def __str__(self) -> str:
        return f"{self.forge} {self.event} {self.delivery_id}"


class CommitStatusReport(models.Model):
    """What Dockyard last told the forge about a run, so a late or retried report never
    overwrites a newer one (a "pending" arriving after "success"), and a report the broker
    lost is seen as not made."""

    run = models.OneToOneField(PipelineRun, on_delete=models.CASCADE, related_name="status_report")
    last_event_id = models.BigIntegerField(default=0)
    last_state = models.CharField(max_length=16, blank=True)
    last_error = models.TextField(blank=True)
    # The newest event whose report ran out of retries: the reaper leaves it be.
    gave_up_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.run}: {self.last_state or 'nothing reported'}"


class NotificationEndpoint(models.Model):
    """An incoming-webhook URL (Slack, Mattermost, anything taking JSON) told about a project."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="notification_endpoints"
    )
    # Encrypted at rest: an incoming-webhook URL is its own credential (Slack's carry the
    # secret in the path), so anyone holding it can post to the channel.
    url = EncryptedTextField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    on_runs = models.BooleanField(default=True, help_text="when a run finishes")
    on_deployments = models.BooleanField(
        default=True, help_text="when a deployment or a rollback finishes"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "id"]

    def __str__(self) -> str:
        # Shown in the admin and kept in its change log: never the whole URL.
        return f"{self.project.slug} -> {endpoint_shown(self.url)}"
