"""Small SVG charts of an environment's traffic (releases.traffic_selectors.EnvironmentTraffic):
requests per second, error rate, and p50/p95 response time, a line per release and a marker
per deployment. Pure: plain SVG text to inline in a page, no database, no chart framework.

Every text that reaches the SVG (labels, titles) is escaped here; the caller may mark the
result safe.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from releases.states import DeploymentKind
from releases.traffic_selectors import (
    DeploymentMark,
    EnvironmentTraffic,
    ReleaseSeries,
    TrafficPoint,
)

WIDTH = 360
LEFT = 48
RIGHT = 12
# Room above the plot for three rows of deployment labels.
TOP = 46
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = 120
# Below the plot: the time ticks, then the legend's rows.
TICKS_HEIGHT = 22
LEGEND_ROW_HEIGHT = 14
FONT_SIZE = 11
# About how wide a character of the chart's font is, to keep labels apart.
CHARACTER_WIDTH = 6.2
MARK_CHARACTER_WIDTH = 5.7
LABEL_ROWS = 3
# Okabe and Ito's palette: told apart with any colour vision, on white.
RELEASE_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
PROXY_COLOUR = "#7f848e"
TOTAL_COLOUR = "#1d2330"
MARK_COLOURS = {"failed": "#a11d1d", "succeeded": "#3b4250"}
MARK_COLOUR_RUNNING = "#0b4aa2"


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: str


@dataclass(frozen=True)
class _Line:
    label: str
    colour: str
    values: tuple[float | None, ...]
    dashed: bool = False
    width: float = 2.0


def traffic_charts(traffic: EnvironmentTraffic, *, id_prefix: str = "traffic") -> list[Chart]:
    """The three charts of `traffic`, in the order a reader asks: how much, how bad, how
    slow. `id_prefix` keeps the SVGs' element ids apart from others on the page."""
    colours = release_colours(traffic.releases)
    several = len(traffic.releases) > 1
    span = span_words(traffic.minutes)

    def per_release(value: Callable[[TrafficPoint], float | None]) -> list[_Line]:
        lines = [
            _Line(series_label(s), colours[s.releases], tuple(value(p) for p in s.points))
            for s in traffic.releases
        ]
        if several:
            total = tuple(value(p) for p in traffic.total)
            lines.append(_Line("all", TOTAL_COLOUR, total, dashed=True, width=1.25))
        return lines

    time_lines = []
    for series in traffic.releases:
        label, colour = series_label(series), colours[series.releases]
        time_lines.append(
            _Line(f"{label} p95", colour, tuple(p.p95_ms for p in series.points), width=2)
        )
        time_lines.append(
            _Line(
                f"{label} p50",
                colour,
                tuple(p.p50_ms for p in series.points),
                dashed=True,
                width=1.5,
            )
        )
    return [
        Chart(
            "requests",
            "Requests per second",
            line_chart(
                traffic,
                title=f"Requests per second, {span}",
                lines=per_release(lambda p: p.requests_per_second),
                format_value=format_rate,
                element_id=f"{id_prefix}-requests",
            ),
        ),
        Chart(
            "errors",
            "Error rate (5xx)",
            line_chart(
                traffic,
                title=f"Share of requests answered 5xx, {span}",
                lines=per_release(lambda p: p.error_rate),
                format_value=format_share,
                element_id=f"{id_prefix}-errors",
                smallest_top=0.01,
            ),
        ),
        Chart(
            "response-time",
            "Response time (p95 solid, p50 dashed)",
            line_chart(
                traffic,
                title=f"Response time, 95th and 50th percentiles, {span}",
                lines=time_lines,
                format_value=format_milliseconds,
                element_id=f"{id_prefix}-response-time",
                legend=[_Line(series_label(s), colours[s.releases], ()) for s in traffic.releases],
            ),
        ),
    ]


def release_colours(releases: Sequence[ReleaseSeries]) -> dict[tuple[int, ...], str]:
    """A colour per line, the same in every chart: the releases in order, HAProxy's own grey."""
    colours: dict[tuple[int, ...], str] = {}
    for series in releases:
        if not series.releases:
            colours[series.releases] = PROXY_COLOUR
        else:
            colours[series.releases] = RELEASE_COLOURS[len(colours) % len(RELEASE_COLOURS)]
    return colours


def series_label(series: ReleaseSeries) -> str:
    if not series.releases:
        return "HAProxy itself"
    if len(series.releases) == 1:
        return f"release {series.releases[0]}"
    return f"releases {series.releases[0]} to {series.releases[-1]}"


def line_chart(
    traffic: EnvironmentTraffic,
    *,
    title: str,
    lines: Sequence[_Line],
    format_value: Callable[[float], str],
    element_id: str,
    smallest_top: float = 1.0,
    legend: Sequence[_Line] | None = None,
) -> str:
    """One chart: its lines over the span's steps, y from zero, the deployments marked."""
    present = [v for line in lines for v in line.values if v is not None]
    top = nice_ceiling(max([*present, smallest_top]))
    start = traffic.since.timestamp()
    span = max(traffic.until.timestamp() - start, 1.0)
    half_step = traffic.step_seconds / 2

    def x_of(moment: datetime | float) -> float:
        seconds = moment if isinstance(moment, float) else moment.timestamp()
        return LEFT + min(max((seconds - start) / span, 0.0), 1.0) * PLOT_WIDTH

    def y_of(value: float) -> float:
        return TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT

    point_x = [
        x_of(min(point.at.timestamp() + half_step, traffic.until.timestamp()))
        for point in traffic.total
    ]
    legend_parts, legend_rows = _legend(legend if legend is not None else lines)
    height = TOP + PLOT_HEIGHT + TICKS_HEIGHT + legend_rows * LEGEND_ROW_HEIGHT + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="traffic-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" aria-labelledby="{_a(element_id)}-title '
        f'{_a(element_id)}-desc" font-size="{FONT_SIZE}" font-family="system-ui, sans-serif">',
        f'<title id="{_a(element_id)}-title">{_t(title)}</title>',
        f'<desc id="{_a(element_id)}-desc">{_t(describe(lines, traffic, format_value))}</desc>',
    ]
    parts += _y_axis(top, y_of, format_value)
    parts += _x_axis(traffic, x_of)
    parts += _marks(traffic.deployments, x_of)
    for line in lines:
        parts += _line(line, point_x, y_of)
    if not present:
        parts.append(
            f'<text x="{LEFT + PLOT_WIDTH / 2:.1f}" y="{TOP + PLOT_HEIGHT / 2:.1f}" '
            f'text-anchor="middle" fill="#5c6370">{_t(nothing_text(traffic))}</text>'
        )
    parts += legend_parts
    parts.append("</svg>")
    return "".join(parts)


def nothing_text(traffic: EnvironmentTraffic) -> str:
    if not traffic.sampling:
        return "request metrics are off"
    return "no requests in this span"


def describe(
    lines: Sequence[_Line], traffic: EnvironmentTraffic, format_value: Callable[[float], str]
) -> str:
    """The chart in words, for a screen reader: each line's latest value, the deployments."""
    said = []
    for line in lines:
        latest = next((v for v in reversed(line.values) if v is not None), None)
        if latest is not None:
            said.append(f"{line.label}: latest {format_value(latest)}")
    words = "; ".join(said) or nothing_text(traffic)
    if traffic.deployments:
        marks = ", ".join(
            f"{mark_label(mark)} {relative_time(mark.at, traffic)}" for mark in traffic.deployments
        )
        words += f". Deployments: {marks}"
    return words + "."


def mark_label(mark: DeploymentMark) -> str:
    """What a deployment's marker says: its kind and release ("rollback 41")."""
    return f"{_kind_words(mark.kind)} {mark.release}"


def relative_time(moment: datetime, traffic: EnvironmentTraffic) -> str:
    minutes = round((traffic.until - moment).total_seconds() / 60)
    return "now" if minutes <= 0 else f"{ago_words(minutes)} ago"


def ago_words(minutes: int) -> str:
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} h"
    return f"{minutes / 1440:.0f} d"


def span_words(minutes: int) -> str:
    return f"last {ago_words(minutes)}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (> 0)."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def format_rate(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g}k/s"
    if value >= 10 or value == 0:
        return f"{value:.0f}/s"
    return f"{value:.2g}/s"


def format_share(value: float) -> str:
    percent = value * 100
    if percent == 0 or percent >= 10:
        return f"{percent:.0f}%"
    return f"{percent:.2g}%"


def format_milliseconds(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.3g} ms"


def _y_axis(
    top: float, y_of: Callable[[float], float], format_value: Callable[[float], str]
) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        value = top * fraction
        y = y_of(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + PLOT_WIDTH}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#9aa1ab" if fraction == 0 else "#e3e6eb"}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{LEFT - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#4a5262">'
            f"{_t(format_value(value))}</text>"
        )
    return parts


def _x_axis(traffic: EnvironmentTraffic, x_of: Callable[[datetime | float], float]) -> list[str]:
    parts = []
    ticks = 4
    until = traffic.until.timestamp()
    # At whole fractions of the span asked for; the first step may begin a little after it.
    span = traffic.minutes * 60
    y = TOP + PLOT_HEIGHT
    for index in range(ticks + 1):
        seconds = until - span * (ticks - index) / ticks
        x = x_of(seconds)
        minutes = round((until - seconds) / 60)
        label = "now" if minutes == 0 else f"\N{MINUS SIGN}{ago_words(minutes)}"
        anchor = "end" if index == ticks else "middle"
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 4}" stroke="#9aa1ab"/>'
            f'<text x="{x:.1f}" y="{y + 16}" text-anchor="{anchor}" fill="#4a5262">'
            f"{_t(label)}</text>"
        )
    return parts


def _marks(marks: Sequence[DeploymentMark], x_of: Callable[[datetime | float], float]) -> list[str]:
    """A dashed line per deployment up to its label above the plot, in the lowest row where
    the label runs into no other; one that fits no row is left to the line's tooltip."""
    parts = []
    row_ends = [-math.inf] * LABEL_ROWS
    for mark in marks:
        x = x_of(mark.at)
        colour = MARK_COLOURS.get(mark.status, MARK_COLOUR_RUNNING)
        label = mark_label(mark)
        tooltip = (
            f"deployment {mark.deployment}: {_kind_words(mark.kind)} of release {mark.release}, "
            f"{mark.status}"
        )
        if mark.watch_state:
            tooltip += f", watch {mark.watch_state.replace('_', ' ')}"
        width = len(label) * MARK_CHARACTER_WIDTH
        # Right of its line, unless that runs off the chart.
        left = x + 3 if x + 3 + width <= WIDTH else x - 3 - width
        row = next((r for r in range(LABEL_ROWS) if row_ends[r] + 4 <= left), None)
        label_y = TOP - 8 - (row or 0) * (FONT_SIZE + 1)
        parts.append(
            f'<g class="deployment-mark"><title>{_t(tooltip)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{label_y - 8 if row is not None else TOP - 4}" '
            f'y2="{TOP + PLOT_HEIGHT}" stroke="{colour}" stroke-width="1.25" '
            f'stroke-dasharray="3 2"/>'
        )
        if row is not None:
            row_ends[row] = left + width
            parts.append(
                f'<text x="{left:.1f}" y="{label_y}" fill="{colour}" font-size="{FONT_SIZE - 1}">'
                f"{_t(label)}</text>"
            )
        parts.append("</g>")
    return parts


def _line(line: _Line, xs: Sequence[float], y_of: Callable[[float], float]) -> list[str]:
    """The line through its values, broken where a step has none; a lone value is a dot."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, value in zip(xs, line.values, strict=False):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x, y_of(value)))
    dash = ' stroke-dasharray="5 3"' if line.dashed else ""
    parts = []
    for run in runs:
        if len(run) == 1:
            x, y = run[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{_a(line.colour)}"/>')
        elif run:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{_a(line.colour)}" '
                f'stroke-width="{line.width}" stroke-linejoin="round"{dash}/>'
            )
    return parts


def _legend(lines: Sequence[_Line]) -> tuple[list[str], int]:
    """A swatch and a name per line below the time ticks, in as many rows as they need; and
    how many rows that is."""
    parts = []
    rows = 1 if lines else 0
    x, y = float(LEFT), TOP + PLOT_HEIGHT + TICKS_HEIGHT + LEGEND_ROW_HEIGHT - 2
    for line in lines:
        width = 22 + len(line.label) * CHARACTER_WIDTH + 12
        if x + width > WIDTH and x > LEFT:
            x, y, rows = float(LEFT), y + LEGEND_ROW_HEIGHT, rows + 1
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        parts.append(
            f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{y - 4}" y2="{y - 4}" '
            f'stroke="{_a(line.colour)}" stroke-width="2.5"{dash}/>'
            f'<text x="{x + 20:.1f}" y="{y}" fill="#1d2330">{_t(line.label)}</text>'
        )
        x += width
    return parts, rows


def _t(text: str) -> str:
    return escape(text, quote=False)


def _a(text: str) -> str:
    return escape(text, quote=True)


def _kind_words(kind: str) -> str:
    """A deployment's kind as people say it ("auto-deploy", not "auto")."""
    return str(DeploymentKind(kind).label).lower() if kind in DeploymentKind.values else kind
