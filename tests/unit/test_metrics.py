"""Metrics: what each helper counts, the dedicated registry, the text format, and the
/metrics + /healthz endpoint on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.health import HealthVerdict
from bot.observability.metrics import FeedReport, Metrics, error_kind
from bot.observability.server import database_health, start_server
from bot.storage.repository import Database


@dataclass(frozen=True)
class Feed:
    """A stand-in with the fields metrics read of ``bot.pipeline.FeedReport``."""

    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    unchanged: bool = False
    error: str | None = None
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
            Feed(new_items=5, matches=2, alerts=3, matched_storylines=(7, 7)),
            Feed(unchanged=True),
            Feed(error="HTTP 503"),
            Feed(error="timed out", error_kind="deadline"),
            Feed(new_items=1, matches=2, alerts=2, matched_storylines=(7, 9)),
        )
    )
    m.record_pass(report, 1.5)
    m.record_pass(Pass((Feed(new_items=1),)), 0.2)
    assert value(m, "storywatch_poll_passes_total") == 2
    assert value(m, "storywatch_feeds_polled_total") == 6
    assert value(m, "storywatch_feeds_unchanged_total") == 1
    assert value(m, "storywatch_new_items_total") == 7
    assert value(m, "storywatch_alerts_queued_total") == 5
    assert value(m, "storywatch_matches_total") == 4
    assert value(m, "storywatch_fetch_errors_total", kind="internal") == 1
    assert value(m, "storywatch_internal_errors_total") == 1
    assert value(m, "storywatch_fetch_errors_total", kind="deadline") == 1
    assert value(m, "storywatch_poll_seconds_count") == 2
    assert value(m, "storywatch_poll_seconds_sum") == 1.7
    assert value(m, "storywatch_poll_seconds_bucket", le="0.25") == 1


def test_error_kind_label() -> None:
    assert error_kind(Feed()) is None
    assert error_kind(Feed(error="x")) == "internal"
    assert error_kind(Feed(error="x", error_kind="parse")) == "parse"
    assert error_kind(Feed(error="x", error_kind="")) == "internal"


def test_record_send_and_pending() -> None:
    m = Metrics()
    m.record_send(True, 0.3)
    m.record_send(True, 0.04)
    m.record_send(False, 12.0)
    m.set_pending(4)
    m.set_pending(2)
    m.record_matches(2)
    assert value(m, "storywatch_alerts_sent_total") == 2
    assert value(m, "storywatch_alerts_failed_total") == 1
    assert value(m, "storywatch_alerts_pending") == 2
    assert value(m, "storywatch_send_seconds_count") == 3
    assert value(m, "storywatch_send_seconds_bucket", le="0.05") == 1
    assert value(m, "storywatch_send_seconds_bucket", le="10.0") == 2
    assert value(m, "storywatch_matches_total") == 2


def test_no_label_grows_with_storylines() -> None:
    """Ten thousand storylines matching make one matches series, not ten thousand."""
    m = Metrics()
    m.record_pass(Pass((Feed(new_items=1, matches=10_000, alerts=0,
                             matched_storylines=tuple(range(10_000))),)), 0.1)
    lines = [ln for ln in m.exposition().decode().splitlines()
             if ln.startswith("storywatch_matches")]
    assert lines == ["storywatch_matches_total 10000.0"]


def test_registries_are_private_to_each_instance_and_not_global() -> None:
    a, b = Metrics(), Metrics()
    a.record_send(True, 0.1)
    assert value(b, "storywatch_alerts_sent_total") == 0
    assert REGISTRY.get_sample_value("storywatch_alerts_sent_total") is None


def test_exposition_is_prometheus_text() -> None:
    m = Metrics()
    m.record_pass(Pass((Feed(error="blocked", error_kind="blocked"),)), 0.5)
    text = m.exposition().decode()
    assert "# TYPE storywatch_fetch_errors_total counter" in text
    assert 'storywatch_fetch_errors_total{kind="blocked"} 1.0' in text
    assert "# TYPE storywatch_send_seconds histogram" in text
    assert "storywatch_alerts_pending 0.0" in text
    # Nothing from the global registry (process or platform collectors).
    assert "process_cpu_seconds_total" not in text
    assert "python_info" not in text
    assert "_created" not in text


# The endpoint. Real HTTP, on 127.0.0.1 only: the server is a thin shell whose
# whole job is sockets, so a fake would test nothing.


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def test_server_serves_metrics_and_health_verdicts(tmp_path: Path) -> None:
    m = Metrics()
    m.record_send(True, 0.2)
    scrapes: list[int] = []
    verdicts = iter(
        [HealthVerdict(ok=True), HealthVerdict(ok=False, reasons=["no poll pass yet"])]
    )
    server = start_server(
        0, m, lambda: next(verdicts), host="127.0.0.1", on_scrape=lambda: scrapes.append(1)
    )
    try:
        status, ctype, body = _get(server.port, "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain; version=")
        assert b"storywatch_alerts_sent_total 1.0" in body
        assert scrapes == [1]
        status, ctype, body = _get(server.port, "/healthz")
        assert (status, ctype) == (200, "application/json")
        assert json.loads(body) == {"ok": True, "status": "healthy", "reasons": []}
        status, _, body = _get(server.port, "/healthz")
        assert status == 503
        assert json.loads(body)["reasons"] == ["no poll pass yet"]
        assert _get(server.port, "/")[0] == 404
    finally:
        server.stop()
        server.stop()
    with pytest.raises(OSError):
        _get(server.port, "/metrics")


def test_server_health_matches_the_cli_verdict(tmp_path: Path) -> None:
    path = tmp_path / "storywatch.db"
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    server = start_server(
        0, Metrics(), database_health(path, 60, clock=lambda: now), host="127.0.0.1"
    )
    try:
        status, _, body = _get(server.port, "/healthz")
        assert status == 503
        assert json.loads(body)["reasons"] == [f"not started yet (no database at {path})"]
        db = Database.open(path)
        db.set_meta("last_poll", (now - timedelta(seconds=30)).isoformat())
        db.set_meta("telegram_ok", now.isoformat())
        db.close()
        assert _get(server.port, "/healthz")[0] == 200
    finally:
        server.stop()


def test_a_failing_health_source_answers_500_and_keeps_serving() -> None:
    def broken() -> HealthVerdict:
        raise RuntimeError("boom")

    server = start_server(0, Metrics(), broken, host="127.0.0.1")
    try:
        assert _get(server.port, "/healthz")[0] == 500
        assert _get(server.port, "/metrics")[0] == 200
    finally:
        server.stop()
