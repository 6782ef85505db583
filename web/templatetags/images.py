"""Image names on the pages: long digests cut to what a reader compares at a glance."""

from django import template

register = template.Library()

# "sha256:" and twelve hex digits, as `docker images` shows an id: enough to tell two apart.
SHORT_DIGEST_LENGTH = len("sha256:") + 12


@register.filter
def short_digest(digest: str) -> str:
    """sha256:0123456789ab for sha256:0123456789abcdef…; anything else as it is."""
    if not digest.startswith("sha256:"):
        return digest
    return digest[:SHORT_DIGEST_LENGTH]
