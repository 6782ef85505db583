"""Times on the pages: UTC said so until the browser says it locally; durations as people read
them, the same as the log viewer's (formatDuration in static/js/run_log.js)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from web.templatetags.times import age, duration, elapsed, local_time

MOMENT = datetime(2025, 3, 14, 13, 3, 22, tzinfo=UTC)


def test_durations_read_as_precisely_as_their_length_deserves() -> None:
    assert duration(3.24) == "3.2 s"
    assert duration(timedelta(seconds=60)) == "1 min 00 s"
    assert duration(245) == "4 min 05 s"
    assert duration(timedelta(hours=2, minutes=7, seconds=20)) == "2 h 07 min"
    assert duration(timedelta(days=3, hours=4)) == "3 d 4 h"
    assert duration(None) == ""


def test_elapsed_is_empty_when_an_end_is_missing_or_before_its_start() -> None:
    assert elapsed(MOMENT, MOMENT + timedelta(seconds=5)) == "5.0 s"
    assert elapsed(MOMENT, None) == elapsed(None, MOMENT) == ""
    assert elapsed(MOMENT, MOMENT - timedelta(seconds=1)) == ""


def test_a_time_is_written_in_utc_saying_so_whatever_zone_it_came_in() -> None:
    paris = MOMENT.astimezone(ZoneInfo("Europe/Paris"))
    assert local_time(paris) == (
        '<time datetime="2025-03-14T13:03:22Z" data-local-time="date">'
        "2025-03-14 13:03:22 UTC</time>"
    )
    assert local_time(MOMENT, show="time") == (
        '<time datetime="2025-03-14T13:03:22Z" data-local-time="time">13:03:22 UTC</time>'
    )
    assert local_time(None) == "—"


@pytest.mark.parametrize(
    ("ago", "words"),
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(minutes=7, seconds=30), "7 min ago"),
        (timedelta(hours=5), "5 h ago"),
        (timedelta(days=2, hours=3), "2 d ago"),
    ],
)
def test_an_age_says_how_long_ago_in_its_largest_unit(ago: timedelta, words: str) -> None:
    assert f">{words}</time>" in age(datetime.now(UTC) - ago)
