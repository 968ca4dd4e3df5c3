"""Tests for the pure rate limiters (no clock, no sleeping: ``now`` is passed in)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.delivery.ratelimit import (
    CommandLimiter,
    SendLimiter,
    SendLimits,
    SlidingWindow,
    is_group,
)


def test_window_allows_limit_then_waits_until_oldest_expires() -> None:
    w = SlidingWindow(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        assert w.delay(t) == 0.0
        w.record(t)
    assert w.delay(2.5) == pytest.approx(7.5)
    assert w.delay(10.0) == 0.0


def test_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0, 1.0)


def test_private_chat_one_per_second_with_margin() -> None:
    lim = SendLimiter()
    assert lim.reserve(42, 100.0) == 0.0
    assert lim.reserve(42, 100.2) == pytest.approx(0.9)  # 1.1 s window
    # A refused reservation is not counted.
    assert lim.reserve(42, 101.1) == 0.0


def test_other_chats_are_not_held_up_by_one_chat() -> None:
    lim = SendLimiter()
    assert lim.reserve(1, 0.0) == 0.0
    assert lim.reserve(2, 0.0) == pytest.approx(1 / 28)  # only the overall pacing
    assert lim.reserve(2, 0.05) == 0.0
    assert lim.reserve(1, 0.1) > 0


def test_group_twenty_per_minute_with_margin() -> None:
    lim = SendLimiter()
    t = 0.0
    for _ in range(20):
        while (wait := lim.reserve(-100, t)) > 0:
            t += wait
    assert t == pytest.approx(19 * 1.1)  # one per 1.1 s, twenty of them
    assert lim.reserve(-100, t + 1.1) == pytest.approx(61.0 - 22.0)
    assert is_group(-100) and not is_group(100)


def test_overall_is_paced_under_thirty_per_second() -> None:
    lim = SendLimiter()
    t = 5.0
    granted: list[float] = []
    for chat in range(1, 100):
        while (wait := lim.reserve(chat, t)) > 0:
            t += wait
        granted.append(t)
    assert sum(1 for g in granted if 5.0 <= g < 6.0) == 28
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 1 / 28 - 1e-9
    # Evenly paced: no one-second window anywhere holds more than 28.
    assert max(sum(1 for g in granted if s <= g < s + 1.0) for s in granted) == 28


def test_block_after_429_for_one_chat_and_for_all() -> None:
    lim = SendLimiter()
    lim.block(7, until=30.0)
    assert lim.delay(7, 10.0) == pytest.approx(20.0)
    assert lim.delay(8, 10.0) == 0.0
    lim.block(None, until=12.0)
    assert lim.delay(8, 10.0) == pytest.approx(2.0)
    assert lim.reserve(7, 30.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, -5, -6]), st.floats(0.0, 0.7)),
        min_size=1,
        max_size=200,
    )
)
def test_granted_sends_never_break_any_limit(steps: list[tuple[int, float]]) -> None:
    limits = SendLimits(overall=3, overall_window=1.0, per_group=4, per_group_window=10.0)
    lim = SendLimiter(limits)
    now = 0.0
    granted: list[tuple[int, float]] = []
    for chat, gap in steps:
        now += gap
        if lim.reserve(chat, now) == 0.0:
            granted.append((chat, now))

    def count(pred: object, start: float, width: float) -> int:
        return sum(1 for c, t in granted if start <= t < start + width and pred(c))  # type: ignore[operator]

    for _, start in granted:
        assert count(lambda c: True, start, 1.0) <= 3
        for chat in (1, 2, -5, -6):
            assert count(lambda c, chat=chat: c == chat, start, 1.0) <= 1
        for chat in (-5, -6):
            assert count(lambda c, chat=chat: c == chat, start, 10.0) <= 4


def test_command_limiter_warns_once_then_stays_quiet() -> None:
    lim = CommandLimiter(per_minute=2)
    assert lim.check(1, 0.0) == "allow"
    assert lim.check(1, 1.0) == "allow"
    assert lim.check(1, 2.0) == "warn"
    assert lim.check(1, 3.0) == "drop"
    assert lim.check(2, 3.0) == "allow"  # other chats unaffected
    assert lim.retry_in(1, 3.0) == pytest.approx(57.0)
    assert lim.check(1, 60.5) == "allow"
    assert lim.check(1, 61.5) == "allow"
    assert lim.check(1, 62.0) == "warn"  # a new burst gets its one warning
