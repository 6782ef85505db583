"""Masking secret values in a log that arrives in pieces. Pure: no ORM, no I/O.

A secret can be cut in two by the stream (half in one chunk, half in the next). The masker
therefore holds back the last few characters of what it has seen, as many as the longest
secret minus one, until the next piece shows whether they begin a secret.
"""

from collections.abc import Iterable

MASK = "••••••"
# Shorter values would mask ordinary words and numbers all over the log.
MIN_SECRET_LENGTH = 4


class SecretMasker:
    """Feed it the log piece by piece; it returns the text that is safe to show so far."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(
            {value for value in secrets if len(value) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self._hold = max((len(value) for value in self._secrets), default=1) - 1
        self._pending = ""

    def feed(self, text: str) -> str:
        """Mask what can be decided now; keep back a tail that may begin a secret."""
        if not self._secrets:
            return text
        self._pending += text
        return self._release(final=False)

    def finish(self) -> str:
        """Everything still held back, masked: the stream has ended."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        text = self._pending
        cut = len(text) if final else max(0, len(text) - self._hold)
        pieces: list[str] = []
        position = 0
        for start, end in _occurrences(text, self._secrets):
            if start >= cut:
                break
            if end > cut:
                # A whole secret straddles the cut: keep all of it for the next round.
                cut = start
                break
            pieces.append(text[position:start])
            pieces.append(MASK)
            position = end
        pieces.append(text[position:cut])
        self._pending = text[cut:]
        return "".join(pieces)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced, for text that is complete."""
    masker = SecretMasker(secrets)
    return masker.feed(text) + masker.finish()


def _occurrences(text: str, secrets: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of secrets in `text`, left to right."""
    spans: list[tuple[int, int]] = []
    position = 0
    while position < len(text):
        found = [(text.find(value, position), value) for value in secrets]
        found = [(start, value) for start, value in found if start >= 0]
        if not found:
            break
        # The leftmost match; among matches at one position the longest (secrets are sorted).
        start, value = min(found, key=lambda item: item[0])
        spans.append((start, start + len(value)))
        position = start + len(value)
    return spans
