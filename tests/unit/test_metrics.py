"""Metrics: what each helper counts, the dedicated registry, and the text format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY

from bot.observability.metrics import FeedReport, Metrics, error_kind


@dataclass(frozen=True)
class Feed:
    """A stand-in with the fields metrics read of ``bot.pipeline.FeedReport``."""

    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    unchanged: bool = False
    error: str | None = None


@dataclass(frozen=True)
class KindedFeed(Feed):
    """A report after the pipeline records ``error_kind`` and ``matched_storylines``."""

    error_kind: str | None = None
    matched_storylines: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pass:
    feeds: Sequence[FeedReport] = field(default_factory=tuple)


def value(m: Metrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_record_pass_counts_feeds_items_matches_alerts_and_errors() -> None:
    m = Metrics()
    report = Pass(
        (
            Feed(new_items=5, matches=2, alerts=3),
            Feed(unchanged=True),
            Feed(error="HTTP 503"),
            KindedFeed(error="timed out", error_kind="deadline"),
            KindedFeed(new_items=1, matches=2, alerts=2, matched_storylines=(7, 9)),
        )
    )
    m.record_pass(report, 1.5)
    m.record_pass(Pass((Feed(new_items=1),)), 0.2)
    assert value(m, "storywatch_poll_passes_total") == 2
    assert value(m, "storywatch_feeds_polled_total") == 6
    assert value(m, "storywatch_feeds_unchanged_total") == 1
    assert value(m, "storywatch_new_items_total") == 7
    assert value(m, "storywatch_alerts_queued_total") == 5
    assert value(m, "storywatch_matches_total", storyline="all") == 2
    assert value(m, "storywatch_matches_total", storyline="7") == 1
    assert value(m, "storywatch_matches_total", storyline="9") == 1
    assert value(m, "storywatch_fetch_errors_total", kind="internal") == 1
    assert value(m, "storywatch_fetch_errors_total", kind="deadline") == 1
    assert value(m, "storywatch_poll_seconds_count") == 2
    assert value(m, "storywatch_poll_seconds_sum") == 1.7
    assert value(m, "storywatch_poll_seconds_bucket", le="0.25") == 1


def test_error_kind_label() -> None:
    assert error_kind(Feed()) is None
    assert error_kind(Feed(error="x")) == "internal"
    assert error_kind(KindedFeed(error="x", error_kind="parse")) == "parse"
    assert error_kind(KindedFeed(error="x", error_kind="")) == "internal"


def test_record_send_and_pending() -> None:
    m = Metrics()
    m.record_send(True, 0.3)
    m.record_send(True, 0.04)
    m.record_send(False, 12.0)
    m.set_pending(4)
    m.set_pending(2)
    m.record_matches(3, 2)
    assert value(m, "storywatch_alerts_sent_total") == 2
    assert value(m, "storywatch_alerts_failed_total") == 1
    assert value(m, "storywatch_alerts_pending") == 2
    assert value(m, "storywatch_send_seconds_count") == 3
    assert value(m, "storywatch_send_seconds_bucket", le="0.05") == 1
    assert value(m, "storywatch_send_seconds_bucket", le="10.0") == 2
    assert value(m, "storywatch_matches_total", storyline="3") == 2


def test_registries_are_private_to_each_instance_and_not_global() -> None:
    a, b = Metrics(), Metrics()
    a.record_send(True, 0.1)
    assert value(b, "storywatch_alerts_sent_total") == 0
    assert REGISTRY.get_sample_value("storywatch_alerts_sent_total") is None


def test_exposition_is_prometheus_text() -> None:
    m = Metrics()
    m.record_pass(Pass((KindedFeed(error="blocked", error_kind="blocked"),)), 0.5)
    text = m.exposition().decode()
    assert "# TYPE storywatch_fetch_errors_total counter" in text
    assert 'storywatch_fetch_errors_total{kind="blocked"} 1.0' in text
    assert "# TYPE storywatch_send_seconds histogram" in text
    assert "storywatch_alerts_pending 0.0" in text
    # Nothing from the global registry (process or platform collectors).
    assert "process_cpu_seconds_total" not in text
    assert "python_info" not in text
