"""Conditional requests and scheduling, as pure functions of FeedState.

What to send (If-None-Match, If-Modified-Since), how to read Retry-After, and when to
check a feed next after a success or a failure. No I/O and no clock: ``now`` is an
argument, so the scheduler's behaviour is testable to the second.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from bot.errors import FetchError, ParseError
from bot.models import FeedState

#: Longest error text kept in FeedState.last_error (it is shown to users in /feeds).
MAX_ERROR_TEXT = 300

# 2**20 intervals is beyond any sane cap; bounding the exponent keeps floats finite.
_MAX_EXPONENT = 20


def conditional_headers(state: FeedState) -> dict[str, str]:
    """Request headers that let the server answer 304 if nothing changed."""
    headers: dict[str, str] = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    Returns None when absent or unreadable; a date in the past gives 0.0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # Not RFC-conformant ("1.5", "-3"), but servers send it; keep what is usable.
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are GMT by definition
    return max(0.0, (when - now).total_seconds())


def next_state_after_success(
    state: FeedState,
    *,
    etag: str | None,
    last_modified: str | None,
    body_hash: str | None,
    now: datetime,
    interval: float,
) -> FeedState:
    """State after a 200 or 304: validators updated, errors cleared, next check scheduled.

    A None ``etag``/``last_modified``/``body_hash`` keeps the stored value: a 304 often
    omits validators, and the caller passes no hash when it did not read a body.
    """
    return replace(
        state,
        etag=etag if etag is not None else state.etag,
        last_modified=last_modified if last_modified is not None else state.last_modified,
        body_hash=body_hash if body_hash is not None else state.body_hash,
        next_check=now + timedelta(seconds=interval),
        consecutive_errors=0,
        last_error=None,
        last_ok=now,
    )


def backoff_seconds(
    consecutive_errors: int,
    *,
    interval: float,
    max_backoff: float,
    retry_after: float | None = None,
) -> float:
    """Delay before the next check after ``consecutive_errors`` failures in a row.

    The first failure waits one normal interval (most failures are transient), then the
    delay doubles per failure up to ``max_backoff``. A server's Retry-After is honoured
    when longer, but never beyond ``max_backoff``: a hostile server must not be able to
    switch a feed off for a year.
    """
    cap = max(max_backoff, interval)
    exponent = min(max(consecutive_errors - 1, 0), _MAX_EXPONENT)
    delay = min(interval * float(1 << exponent), cap)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, cap)
    return delay


def error_text(error: FetchError | ParseError) -> str:
    """A short one-line description of ``error`` for FeedState.last_error."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 1] + "…"
    return text


def next_state_after_error(
    state: FeedState,
    error: FetchError | ParseError,
    *,
    now: datetime,
    interval: float,
    max_backoff: float,
) -> FeedState:
    """State after a failed fetch or parse: count the error and back off.

    Validators and the body hash are kept: the next success can still be a 304.
    """
    errors = state.consecutive_errors + 1
    retry_after = error.retry_after if isinstance(error, FetchError) else None
    delay = backoff_seconds(
        errors, interval=interval, max_backoff=max_backoff, retry_after=retry_after
    )
    return replace(
        state,
        next_check=now + timedelta(seconds=delay),
        consecutive_errors=errors,
        last_error=error_text(error),
    )


def next_state_after_internal_error(
    state: FeedState, message: str, *, now: datetime, interval: float
) -> FeedState:
    """State after a failure that was our bug, not the feed's: try again at the
    next interval, and leave the feed's own error count and backoff alone."""
    return replace(state, next_check=now + timedelta(seconds=interval), last_error=message)
