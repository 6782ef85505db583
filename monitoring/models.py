"""What /metrics has already counted, so that a scrape reads only what is new."""

from django.db import models


class MetricsRollup(models.Model):
    """One row: the totals of everything that settled before `settled_until`.

    A run, a stage or a delivery settles when it ends (finished, acted on) and does not change
    after; a scrape adds what settled since the last roll-up and counts only the rest live, so
    its cost follows the last minutes' activity, not the history's size. Totals and their
    boundary live in one row, read in one query: a scrape never sees a roll-up and a boundary
    from two different moments (which would count the same rows twice).
    """

    settled_until = models.DateTimeField()
    # {family: {labels joined by "\\x1f": [count, sum in seconds, bucket counts...]}}
    totals = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"metrics rolled up until {self.settled_until:%Y-%m-%d %H:%M:%S}"
