"""Unit tests for conditional headers, Retry-After parsing and backoff scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import FetchError, HTTPStatusError, ParseError
from bot.fetching.conditional import (
    MAX_ERROR_TEXT,
    backoff_seconds,
    conditional_headers,
    next_state_after_error,
    next_state_after_success,
    parse_retry_after,
)
from bot.models import FeedState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def test_no_validators_no_headers() -> None:
    assert conditional_headers(FeedState()) == {}


def test_both_validators_sent() -> None:
    state = FeedState(etag='"abc"', last_modified="Wed, 01 May 2024 10:00:00 GMT")
    assert conditional_headers(state) == {
        "If-None-Match": '"abc"',
        "If-Modified-Since": "Wed, 01 May 2024 10:00:00 GMT",
    }


def test_weak_etag_sent_verbatim() -> None:
    assert conditional_headers(FeedState(etag='W/"x"')) == {"If-None-Match": 'W/"x"'}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 May 2024 12:05:00 GMT", 300.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),  # RFC 850
        ("Wed May  1 12:00:30 2024", 30.0),  # asctime
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_success_sets_validators_and_schedule() -> None:
    before = FeedState(consecutive_errors=3, last_error="boom", etag='"old"')
    after = next_state_after_success(
        before, etag='"new"', last_modified="LM", body_hash="h1", now=NOW, interval=300
    )
    assert after == FeedState(
        etag='"new"',
        last_modified="LM",
        body_hash="h1",
        next_check=NOW + timedelta(seconds=300),
        consecutive_errors=0,
        last_error=None,
        last_ok=NOW,
    )


def test_success_without_new_validators_keeps_old_ones() -> None:
    before = FeedState(etag='"v1"', last_modified="LM", body_hash="h")
    after = next_state_after_success(
        before, etag=None, last_modified=None, body_hash=None, now=NOW, interval=60
    )
    assert (after.etag, after.last_modified, after.body_hash) == ('"v1"', "LM", "h")


def _after_errors(count: int, error: FetchError | ParseError, **kw: float) -> FeedState:
    state = FeedState()
    for _ in range(count):
        state = next_state_after_error(
            state,
            error,
            now=NOW,
            interval=kw.get("interval", 300.0),
            max_backoff=kw.get("max_backoff", 6 * HOUR),
        )
    return state


def test_backoff_doubles_then_caps() -> None:
    err = FetchError("could not connect", url="u")
    delays = [
        (_after_errors(n, err).next_check - NOW).total_seconds()  # type: ignore[operator]
        for n in range(1, 9)
    ]
    assert delays == [300, 600, 1200, 2400, 4800, 9600, 19200, 21600]


def test_backoff_counts_and_records_errors() -> None:
    state = _after_errors(3, ParseError("not a feed"))
    assert state.consecutive_errors == 3
    assert state.last_error == "not a feed"


def test_error_keeps_validators() -> None:
    state = FeedState(etag='"e"', last_modified="LM", body_hash="h", last_ok=NOW)
    after = next_state_after_error(
        state, FetchError("x", url="u"), now=NOW, interval=60, max_backoff=HOUR
    )
    assert (after.etag, after.last_modified, after.body_hash, after.last_ok) == (
        '"e"',
        "LM",
        "h",
        NOW,
    )


def test_retry_after_longer_than_backoff_is_honoured() -> None:
    err = HTTPStatusError("429", url="u", status=429, retry_after=1800)
    state = _after_errors(1, err)
    assert state.next_check == NOW + timedelta(seconds=1800)


def test_retry_after_is_bounded_by_max_backoff() -> None:
    err = HTTPStatusError("503", url="u", status=503, retry_after=10 * 24 * HOUR)
    state = _after_errors(1, err, max_backoff=6 * HOUR)
    assert state.next_check == NOW + timedelta(hours=6)


def test_short_retry_after_does_not_shorten_backoff() -> None:
    err = HTTPStatusError("429", url="u", status=429, retry_after=1)
    state = _after_errors(1, err, interval=300)
    assert state.next_check == NOW + timedelta(seconds=300)


def test_huge_error_counts_do_not_overflow() -> None:
    assert backoff_seconds(10_000, interval=300, max_backoff=HOUR) == HOUR


def test_max_backoff_below_interval_never_polls_faster_than_interval() -> None:
    assert backoff_seconds(5, interval=600, max_backoff=60) == 600


def test_error_text_is_one_short_line() -> None:
    err = FetchError("line one\nline two " + "x" * 1000, url="u")
    state = _after_errors(1, err)
    assert state.last_error is not None
    assert "\n" not in state.last_error
    assert len(state.last_error) <= MAX_ERROR_TEXT
