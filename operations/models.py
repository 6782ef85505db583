"""What the housekeepers did last, installation-wide: one row per chore that runs on one
worker at a time (operations.housekeeping)."""

from django.db import models


class ChoreRecord(models.Model):
    name = models.CharField(max_length=64, unique=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    # Which worker ran it last (host:pid), and what went wrong, if it did.
    last_worker = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.name} (last on {self.last_worker or 'no worker yet'})"
