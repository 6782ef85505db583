"""Traffic figures on the pages, written as the charts write them (web.traffic_charts)."""

from django import template

from web.traffic_charts import format_milliseconds, format_rate, format_share

register = template.Library()


@register.filter
def per_second(value: float | None) -> str:
    """12/s, 0.5/s; "—" without a figure."""
    return "—" if value is None else format_rate(value)


@register.filter
def share(value: float | None) -> str:
    """0.4%, 12%; "—" without a figure."""
    return "—" if value is None else format_share(value)


@register.filter
def milliseconds(value: float | None) -> str:
    """42 ms, 1.2 s; "—" without a figure."""
    return "—" if value is None else format_milliseconds(value)
