"""The worker's hooks into Celery's life cycle (filled in by the heartbeat work)."""
