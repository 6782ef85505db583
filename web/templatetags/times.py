"""Times on the pages: shown in the reader's own time zone, durations in words a person reads.

The server writes UTC with the zone named; static/js/local_times.js rewrites each <time> in
the browser's zone, named too, so a page never shows a time without saying in which zone.
"""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def local_time(moment: datetime | None, empty: str = "—", show: str = "date") -> SafeString | str:
    """A <time> the browser shows in its own zone; UTC, said so, until it does. `show="time"`
    leaves the date out, where the page has said it already (a run's stages)."""
    if moment is None:
        return empty
    utc = moment.astimezone(UTC)
    shown = "%H:%M:%S" if show == "time" else "%Y-%m-%d %H:%M:%S"
    return format_html(
        '<time datetime="{}" data-local-time="{}">{} UTC</time>',
        _iso(utc),
        "time" if show == "time" else "date",
        utc.strftime(shown),
    )


@register.filter
def duration(value: timedelta | float | None) -> str:
    """3.2 s, 4 min 05 s, 2 h 07 min: as precise as a reader of that length cares."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def case_seconds(seconds: float | None) -> str:
    """A test case's time as test runners print it, to the hundredth below ten seconds
    (0.04 s, 3.10 s): most cases take less than the tenth `duration` would show."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    return duration(seconds)


@register.simple_tag
def elapsed(start: datetime | None, end: datetime | None) -> str:
    """The duration from start to end; "" when either is unknown (or they are out of order)."""
    if start is None or end is None or end < start:
        return ""
    return duration(end - start)


@register.simple_tag
def age(moment: datetime | None) -> SafeString | str:
    """How long ago, e.g. "3 min ago", with the moment itself (in the reader's zone) on hover."""
    if moment is None:
        return ""
    ago = max(timezone.now() - moment, timedelta(0))
    words = "just now" if ago < timedelta(seconds=10) else f"{_rounded(ago)} ago"
    return format_html(
        '<time datetime="{}" data-local-title>{}</time>', _iso(moment.astimezone(UTC)), words
    )


def _iso(utc: datetime) -> str:
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


def _rounded(ago: timedelta) -> str:
    seconds = int(ago.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
