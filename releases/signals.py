"""Who may deploy to an environment, changed in the admin: into the audit log."""

from audit.models import AuditAction
from audit.signals import audit_many_to_many
from releases.models import Environment

audit_many_to_many(
    Environment.deployers.through, AuditAction.DEPLOYERS_CHANGED, Environment.deployers.field
)
