"""Request figures of a span of traffic: counts by status class and response times kept as a
histogram, so that samples of any span (five seconds, a minute, a watch's window) add up and
their percentiles can still be read. Pure: no ORM, no I/O."""

from collections.abc import Iterable
from dataclasses import dataclass, field

# Upper bounds (milliseconds) of the response-time buckets; one more bucket past the last.
# Close enough for p50/p95 of web requests, small enough to keep in every sample.
BUCKET_BOUNDS_MS: tuple[int, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip


@dataclass
class Figures:
    requests: int = 0
    responses_2xx: int = 0
    responses_3xx: int = 0
    responses_4xx: int = 0
    responses_5xx: int = 0
    responses_other: int = 0
    time_buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS_MS) + 1))

    def count(self, status: int, total_ms: int) -> None:
        self.requests += 1
        if 200 <= status < 300:
            self.responses_2xx += 1
        elif 300 <= status < 400:
            self.responses_3xx += 1
        elif 400 <= status < 500:
            self.responses_4xx += 1
        elif 500 <= status < 600:
            self.responses_5xx += 1
        else:
            self.responses_other += 1
        if total_ms >= 0:
            self.time_buckets[bucket_index(total_ms)] += 1

    def add(self, other: "Figures") -> None:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        # A sample with no timed request may hold no buckets at all.
        theirs = list(other.time_buckets) or [0] * len(self.time_buckets)
        self.time_buckets = [a + b for a, b in zip(self.time_buckets, theirs, strict=True)]

    @property
    def error_rate(self) -> float:
        """The share of requests answered 5xx (by the app, or by HAProxy for it)."""
        return self.responses_5xx / self.requests if self.requests else 0.0

    def percentile_ms(self, quantile: float) -> float | None:
        """The response time under which `quantile` of the timed requests finished (None
        without any), interpolated inside its bucket."""
        return percentile_ms(self.time_buckets, quantile)


COUNT_FIELDS = (
    "requests",
    "responses_2xx",
    "responses_3xx",
    "responses_4xx",
    "responses_5xx",
    "responses_other",
)


def bucket_index(total_ms: int) -> int:
    for index, bound in enumerate(BUCKET_BOUNDS_MS):
        if total_ms <= bound:
            return index
    return len(BUCKET_BOUNDS_MS)


def percentile_ms(buckets: list[int], quantile: float) -> float | None:
    total = sum(buckets)
    if total == 0:
        return None
    wanted = quantile * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= wanted:
            low = BUCKET_BOUNDS_MS[index - 1] if index > 0 else 0
            high = BUCKET_BOUNDS_MS[index] if index < len(BUCKET_BOUNDS_MS) else low * 2
            return low + (high - low) * max(wanted - seen, 0) / count
        seen += count
    return float(BUCKET_BOUNDS_MS[-1])


def figures_sum(many: Iterable[Figures]) -> Figures:
    total = Figures()
    for one in many:
        total.add(one)
    return total


def slot_of_server(server: str) -> str:
    """The slot a backend's server belongs to: `blue`, or `blue-2` for its second replica."""
    return server.split("-", 1)[0]
