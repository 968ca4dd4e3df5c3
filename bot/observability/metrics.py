"""Prometheus metrics for the bot, in a registry of their own.

``Metrics`` owns a dedicated ``CollectorRegistry`` rather than the global one,
so that two bots in one process (tests) never share counters and nothing a
library registers globally leaks into ``/metrics``. The composition root makes
one ``Metrics`` and passes it to the poller and the sender, which report what
happened through the ``record_*`` helpers; nothing here knows the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "FeedReport", "Metrics", "PassReport", "error_kind"]

# A failure whose FeedReport does not say what kind it was.
UNKNOWN_KIND = "internal"

# Telegram answers in ~0.1-1 s; a send that waited out a 429 can take a minute.
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A pass over many feeds is bounded by the fetch deadline (20 s by default).
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class FeedReport(Protocol):
    """What metrics read of ``bot.pipeline.FeedReport`` (a protocol, so this
    module depends on no pipeline code and tests can pass plain records)."""

    @property
    def error(self) -> str | None: ...
    @property
    def unchanged(self) -> bool: ...
    @property
    def new_items(self) -> int: ...
    @property
    def matches(self) -> int: ...
    @property
    def alerts(self) -> int: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def matched_storylines(self) -> Sequence[int]: ...


class PassReport(Protocol):
    """What metrics read of ``bot.pipeline.PassReport``."""

    @property
    def feeds(self) -> Sequence[FeedReport]: ...


def error_kind(feed: FeedReport) -> str | None:
    """The metrics label of a failed feed (``FetchError.kind``, ``ParseError.kind``,
    ``'internal'``), or None when it did not fail."""
    if feed.error is None:
        return None
    return feed.error_kind or UNKNOWN_KIND


class Metrics:
    """Every metric the bot exports, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # The *_created series would double /metrics for a start time Prometheus
        # ignores by default. The switch is process-wide; the bot is the only
        # exporter in its process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter("storywatch_poll_passes", "Poll passes completed.", registry=r)
        self.feeds_polled = Counter(
            "storywatch_feeds_polled", "Feeds polled (fetched or found unchanged).", registry=r
        )
        self.feeds_unchanged = Counter(
            "storywatch_feeds_unchanged",
            "Feeds whose body had not changed (304 or same hash).",
            registry=r,
        )
        self.fetch_errors = Counter(
            "storywatch_fetch_errors",
            "Feeds whose poll failed, by kind of failure.",
            ["kind"],
            registry=r,
        )
        self.new_items = Counter("storywatch_new_items", "New feed items stored.", registry=r)
        # One series, not one per storyline: storyline ids are unbounded (every
        # /track makes one), and so would the exporter's memory and the scrape be.
        self.matches = Counter(
            "storywatch_matches", "Matches of new items to storylines.", registry=r
        )
        self.internal_errors = Counter(
            "storywatch_internal_errors",
            "Feeds whose poll failed through a Storywatch bug (also in fetch_errors, "
            "kind=internal); such feeds are retried next interval, not backed off.",
            registry=r,
        )
        self.alerts_queued = Counter(
            "storywatch_alerts_queued", "Alerts written to the outbox.", registry=r
        )
        self.alerts_sent = Counter(
            "storywatch_alerts_sent", "Alerts delivered to Telegram.", registry=r
        )
        self.alerts_failed = Counter(
            "storywatch_alerts_failed", "Alert send attempts that failed.", registry=r
        )
        self.alerts_pending = Gauge(
            "storywatch_alerts_pending", "Alerts waiting in the outbox.", registry=r
        )
        self.send_seconds = Histogram(
            "storywatch_send_seconds",
            "Time of one alert send attempt, success or not.",
            buckets=SEND_BUCKETS,
            registry=r,
        )
        self.poll_seconds = Histogram(
            "storywatch_poll_seconds",
            "Time of one whole poll pass.",
            buckets=POLL_BUCKETS,
            registry=r,
        )

    def record_pass(self, report: PassReport, seconds: float) -> None:
        """Count what one poll pass did and how long it took."""
        self.passes.inc()
        self.poll_seconds.observe(seconds)
        for feed in report.feeds:
            self.feeds_polled.inc()
            kind = error_kind(feed)
            if kind is not None:
                self.fetch_errors.labels(kind=kind).inc()
                if kind == UNKNOWN_KIND:
                    self.internal_errors.inc()
                continue
            if feed.unchanged:
                self.feeds_unchanged.inc()
            self.new_items.inc(feed.new_items)
            self.alerts_queued.inc(feed.alerts)
            self.matches.inc(len(feed.matched_storylines))

    def record_matches(self, count: int = 1) -> None:
        """Count matches, for callers that know them one by one."""
        self.matches.inc(count)

    def record_send(self, ok: bool, seconds: float) -> None:
        """Count one send attempt of an alert and its duration."""
        self.send_seconds.observe(seconds)
        (self.alerts_sent if ok else self.alerts_failed).inc()

    def set_pending(self, n: int) -> None:
        """Set the number of alerts waiting in the outbox (e.g. from ``outbox_counts``)."""
        self.alerts_pending.set(n)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, as served on ``/metrics``."""
        return generate_latest(self.registry)
