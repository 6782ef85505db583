"""The traffic charts: plain SVG drawn from a traffic read, no database."""

import re
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta

import pytest

from releases.traffic_selectors import (
    DeploymentMark,
    EnvironmentTraffic,
    ReleaseSeries,
    TrafficPoint,
)
from web.traffic_charts import (
    PROXY_COLOUR,
    WIDTH,
    format_milliseconds,
    format_rate,
    format_share,
    nice_ceiling,
    traffic_charts,
)

SVG = "{http://www.w3.org/2000/svg}"
UNTIL = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
SINCE = datetime(2026, 3, 2, 11, 1, tzinfo=UTC)
STEPS = 60


def point(index: int, rate: float | None, errors: float = 0.0, ms: float = 40.0) -> TrafficPoint:
    return TrafficPoint(
        at=SINCE + timedelta(minutes=index),
        requests=0 if rate is None else round(rate * 60),
        requests_per_second=rate,
        error_rate=None if rate is None else errors,
        p50_ms=None if rate is None else ms,
        p95_ms=None if rate is None else ms * 3,
    )


def series(releases: tuple[int, ...], rates: list[float | None]) -> ReleaseSeries:
    return ReleaseSeries(releases, tuple(point(i, rate) for i, rate in enumerate(rates)))


def traffic(
    releases: tuple[ReleaseSeries, ...] = (),
    deployments: tuple[DeploymentMark, ...] = (),
    *,
    sampling: bool = True,
) -> EnvironmentTraffic:
    totals: list[float | None] = [None] * STEPS
    for one in releases:
        for index, found in enumerate(one.points):
            if found.requests_per_second is not None:
                totals[index] = (totals[index] or 0) + found.requests_per_second
    return EnvironmentTraffic(
        minutes=60,
        host=None,
        since=SINCE,
        until=UNTIL,
        step_seconds=60,
        total=tuple(point(i, rate) for i, rate in enumerate(totals)),
        releases=releases,
        deployments=deployments,
        now=(),
        serving_release=42,
        sampling=sampling,
    )


def mark(
    minutes_ago: float, kind: str = "deploy", release: int = 42, **fields: str
) -> DeploymentMark:
    return DeploymentMark(
        deployment=7,
        at=UNTIL - timedelta(minutes=minutes_ago),
        kind=kind,
        release=release,
        status=fields.get("status", "succeeded"),
        watch_state=fields.get("watch_state", ""),
    )


def parsed(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def texts(svg: str) -> list[str]:
    return [element.text or "" for element in parsed(svg).iter(f"{SVG}text")]


def two_releases() -> EnvironmentTraffic:
    old = series((41,), [10.0] * 30 + [None] * 30)
    new = series((42,), [None] * 30 + [12.0] * 29 + [37.0])
    return traffic((old, new), (mark(30, "promote"), mark(5, "rollback", 41, status="failed")))


def test_three_charts_in_the_order_a_reader_asks_each_an_accessible_image() -> None:
    charts = traffic_charts(two_releases(), id_prefix="env-3")
    assert [chart.key for chart in charts] == ["requests", "errors", "response-time"]
    for chart in charts:
        svg = parsed(chart.svg)
        assert svg.get("role") == "img"
        title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
        assert title is not None and desc is not None
        assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
        assert title.get("id", "").startswith(f"env-3-{chart.key}")
    assert charts[0].svg.count('<title id="') == 1


def test_each_release_has_a_line_of_its_own_colour_and_a_name_in_the_legend() -> None:
    requests = traffic_charts(two_releases())[0].svg
    lines = parsed(requests).findall(f"{SVG}polyline")
    colours = [line.get("stroke") for line in lines]
    # Release 41, release 42, and the total, dashed.
    assert len(set(colours)) == 3
    assert lines[-1].get("stroke-dasharray") is not None
    assert {"release 41", "release 42", "all"} <= set(texts(requests))


def test_a_single_release_has_no_separate_total_line() -> None:
    only = traffic((series((42,), [5.0] * STEPS),))
    requests = traffic_charts(only)[0].svg
    assert len(parsed(requests).findall(f"{SVG}polyline")) == 1
    assert "all" not in texts(requests)


def test_haproxys_own_answers_are_grey_and_older_releases_share_a_line() -> None:
    chart = traffic_charts(
        traffic((series((38, 39, 40), [1.0] * STEPS), series((), [2.0] * STEPS)))
    )[0].svg
    assert "releases 38 to 40" in texts(chart) and "HAProxy itself" in texts(chart)
    assert PROXY_COLOUR in [line.get("stroke") for line in parsed(chart).iter(f"{SVG}polyline")]


def test_a_step_without_samples_breaks_the_line_and_a_lone_value_is_a_dot() -> None:
    rates: list[float | None] = [3.0] * 10 + [None] * 5 + [4.0] * 10 + [None] * 5 + [9.0]
    rates += [None] * (STEPS - len(rates))
    chart = traffic_charts(traffic((series((42,), rates),)))[0].svg
    lines = parsed(chart).findall(f"{SVG}polyline")
    assert [len(line.get("points", "").split()) for line in lines] == [10, 10]
    assert len(parsed(chart).findall(f"{SVG}circle")) == 1


def test_the_y_axis_runs_from_zero_to_a_round_number_above_the_highest_value() -> None:
    requests, errors, response_time = (chart.svg for chart in traffic_charts(two_releases()))
    assert {"0/s", "25/s", "50/s"} <= set(texts(requests))
    # No errors at all: the axis still reads as a share, up to 1%.
    assert {"0%", "0.5%", "1%"} <= set(texts(errors))
    # p95 of 120 ms is the highest.
    assert {"0 ms", "100 ms", "200 ms"} <= set(texts(response_time))


def test_the_time_axis_counts_back_from_now() -> None:
    labels = texts(traffic_charts(two_releases())[0].svg)
    for label in ("\N{MINUS SIGN}60 min", "\N{MINUS SIGN}30 min", "now"):
        assert label in labels


def test_each_deployment_is_a_marker_labelled_with_its_kind_and_release() -> None:
    chart = traffic_charts(two_releases())[0].svg
    marks = parsed(chart).findall(f"{SVG}g")
    assert len(marks) == 2
    assert {"promote 42", "rollback 41"} <= set(texts(chart))
    tooltips = [m.find(f"{SVG}title").text for m in marks]  # type: ignore[union-attr]
    assert tooltips[1] == "deployment 7: rollback of release 41, failed"
    [failed_line] = marks[1].findall(f"{SVG}line")
    assert failed_line.get("stroke") == "#a11d1d"


def test_labels_that_would_overlap_take_another_row_or_only_a_tooltip() -> None:
    crowded = tuple(mark(10, kind) for kind in ("deploy", "restart", "stop", "start", "scale"))
    chart = traffic_charts(traffic((series((42,), [1.0] * STEPS),), crowded))[0].svg
    labelled = [t for t in texts(chart) if t.endswith(" 42") and t.split()[0] != "release"]
    assert len(labelled) == 3
    rows = {
        element.get("y")
        for g in parsed(chart).findall(f"{SVG}g")
        for element in g.findall(f"{SVG}text")
    }
    assert len(rows) == 3
    assert len(parsed(chart).findall(f"{SVG}g")) == 5


def test_everything_drawn_stays_inside_the_chart() -> None:
    deployments = (mark(59.5), mark(0, "restart"))
    chart = traffic_charts(traffic((series((42,), [1.0] * STEPS),), deployments))[0].svg
    xs = [float(x) for x in re.findall(r' x[12]?="(-?[0-9.]+)"', chart)]
    assert xs and min(xs) >= 0 and max(xs) <= WIDTH
    for element in parsed(chart).iter(f"{SVG}text"):
        if element.get("text-anchor", "start") == "start":
            width = len(element.text or "") * 5.7
            assert float(element.get("x", 0)) + width <= WIDTH + 1, element.text


def test_every_text_is_escaped() -> None:
    hostile = mark(10, kind='<script>alert("x")</script>', release=1)
    chart = traffic_charts(traffic((), (hostile,)), id_prefix='a" onload="x')[0].svg
    assert "<script>" not in chart and 'onload="x' not in chart
    assert "&lt;script&gt;" in chart
    parsed(chart)


def test_a_span_without_requests_says_so_and_so_do_metrics_that_are_off() -> None:
    assert "no requests in this span" in texts(traffic_charts(traffic())[0].svg)
    off = traffic_charts(traffic(sampling=False))[2].svg
    assert "request metrics are off" in texts(off)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.003, 0.005), (0.01, 0.01), (1, 1), (1.2, 2), (2.2, 2.5), (37, 50), (120, 200), (999, 1000)],
)
def test_the_axis_top_is_the_next_round_number(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_figures_read_as_people_write_them() -> None:
    assert [format_rate(v) for v in (0, 0.25, 3.14, 12.4, 2500)] == [
        "0/s",
        "0.25/s",
        "3.1/s",
        "12/s",
        "2.5k/s",
    ]
    assert [format_share(v) for v in (0, 0.0038, 0.025, 0.5)] == ["0%", "0.38%", "2.5%", "50%"]
    assert [format_milliseconds(v) for v in (3.25, 66.43, 250, 1500)] == [
        "3.25 ms",
        "66.4 ms",
        "250 ms",
        "1.5 s",
    ]


def test_an_auto_deploy_marker_says_auto_deploy() -> None:
    chart = traffic_charts(traffic((series((6,), [1.0] * 60),), (mark(10, "auto", 6),)))[0].svg
    assert "auto-deploy 6" in texts(chart)
