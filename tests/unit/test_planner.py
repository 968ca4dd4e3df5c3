"""The alert planner alone: no database, just facts in and actions out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.planner import (
    FOLDED,
    MAX_EDITS_PER_ALERT,
    STORM_WINDOW,
    ChatFacts,
    CountIntoSummary,
    Queue,
    StartSummary,
    alerts_allowed,
    plan_chat,
    plan_fanout,
)

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_a_first_poll_alerts_nothing() -> None:
    assert not alerts_allowed(feed_primed=False)
    assert alerts_allowed(feed_primed=True)


def test_a_new_development_is_a_send_to_every_chat() -> None:
    actions = plan_fanout([ChatFacts(1), ChatFacts(2)], NOW, None)
    assert actions == [Queue(1, None, "pending"), Queue(2, None, "pending")]
    assert actions[0].kind == "send" and actions[0].last_error is None


def test_a_repeat_edits_the_chats_alert_and_folds_while_an_edit_waits() -> None:
    edit = plan_chat(ChatFacts(1, parent=7), NOW, None)
    assert edit == Queue(1, 7, "pending") and edit.kind == "edit"
    folded = plan_chat(ChatFacts(1, parent=7, parent_edits=1, parent_waiting=1), NOW, None)
    assert folded == Queue(1, 7, "dropped") and folded.last_error == FOLDED


def test_an_alert_with_the_most_edits_takes_no_more() -> None:
    facts = ChatFacts(1, parent=7, parent_edits=MAX_EDITS_PER_ALERT)
    assert plan_chat(facts, NOW, None) is None
    assert plan_fanout([facts, ChatFacts(2)], NOW, None) == [Queue(2, None, "pending")]


def test_past_the_hourly_limit_a_summary_is_started_then_counted_into() -> None:
    first = NOW - timedelta(minutes=20)
    start = plan_chat(ChatFacts(1, recent=3, oldest_recent=first), NOW, 3)
    assert start == StartSummary(1, first + STORM_WINDOW)
    more = plan_chat(ChatFacts(1, recent=3, summary_id=11, oldest_recent=first), NOW, 3)
    assert more == CountIntoSummary(1, 11)
    assert plan_chat(ChatFacts(1, recent=2), NOW, 3) == Queue(1, None, "pending")
    assert plan_chat(ChatFacts(1, recent=50), NOW, None) == Queue(1, None, "pending")


def test_a_folded_edit_is_never_held_for_a_storm() -> None:
    facts = ChatFacts(1, parent=7, parent_edits=2, parent_waiting=1, recent=99)
    assert plan_chat(facts, NOW, 3) == Queue(1, 7, "dropped")


def test_a_muted_or_self_excluded_chat_gets_nothing_even_a_digest_row() -> None:
    from bot.delivery.schedule import Delivery

    digest = Delivery(mode="digest")
    assert plan_chat(ChatFacts(1, muted=True, delivery=digest), NOW, None) is None
    assert plan_chat(ChatFacts(1, excluded=True, parent=7), NOW, None) is None


def test_digest_holding_comes_before_edits_and_storms() -> None:
    from bot.delivery.schedule import Delivery
    from bot.planner import HoldForDigest

    held = plan_chat(ChatFacts(1, recent=99, delivery=Delivery(mode="digest")), NOW, 3)
    assert held == HoldForDigest(1, None) and held.kind == "send"
    waiting = ChatFacts(1, parent=7, parent_held=True)
    assert plan_chat(waiting, NOW, None) == HoldForDigest(1, 7)
    told = ChatFacts(1, parent=7, parent_held=True, parent_in_digest=True)
    assert plan_chat(told, NOW, None) is None
    assert plan_chat(ChatFacts(1, digest_only=True), NOW, None) == HoldForDigest(1, None)
