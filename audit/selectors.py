"""Reading the audit log."""

from django.db.models import QuerySet

from audit.models import AuditEntry


def audit_entries(
    *, action: str = "", target_type: str = "", target_id: str = "", actor: str = ""
) -> QuerySet[AuditEntry]:
    """The newest first, narrowed by whichever of the filters are given."""
    entries = AuditEntry.objects.select_related("actor_user").order_by("-at", "-id")
    if action:
        entries = entries.filter(action=action)
    if target_type:
        entries = entries.filter(target_type=target_type)
    if target_id:
        entries = entries.filter(target_id=target_id)
    if actor:
        entries = entries.filter(actor=actor)
    return entries
