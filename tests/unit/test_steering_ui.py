"""The alert buttons' data and keyboards, the steering commands' parsing, and the
storage they use (mutes in the fan-out, feedback kept once per alert)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.delivery.buttons import (
    AlertPress,
    ButtonState,
    alert_keyboard,
    data,
    parse_alert_data,
)
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import PENDING_PER_CHAT, Database, MatchToStore
from bot.telegram import commands as c
from bot.telegram.steering import FOREVER, mute_until, parse_track_data, track_data

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_alert_data_round_trips_and_rejects_anything_else() -> None:
    assert parse_alert_data(data(123, 45, "down")) == AlertPress(123, 45, "down")
    for bad in ("", "a:1:2", "a:1:2:explode", "b:1:2:up", "a:x:2:up", "a:1:-2:up",
                "a:1234567890123:2:up", "page:storylines:2", "a:1:2:up:extra"):
        assert parse_alert_data(bad) is None, bad


def test_keyboard_shows_what_was_recorded_and_fits_telegram() -> None:
    big = 10**12 - 1
    rows = alert_keyboard(big, [big], {big: ButtonState(verdict="down", muted=True)})
    assert [t for t, _ in rows[0]] == ["👍", "✅ 👎", "🔕 muted", "Stop following"]
    assert all(1 <= len(d.encode()) <= 64 for row in rows for _, d in row)
    menu = alert_keyboard(1, [1], {1: ButtonState(muted=True, menu=True)})
    assert [t for t, _ in menu[0]] == ["1 day", "1 week", "Until unmuted", "Unmute", "‹"]
    assert [t for t, _ in alert_keyboard(1, [1], {1: ButtonState(following=False)})[0]] == [
        "↩ Follow again"]


def test_an_alert_naming_several_storylines_has_a_row_each_and_a_summary_no_verdicts() -> None:
    rows = alert_keyboard(9, [3, 4, 3], {})
    assert [[t for t, _ in r] for r in rows] == [
        ["👍 #3", "👎 #3", "🔕 #3", "Stop following #3"],
        ["👍 #4", "👎 #4", "🔕 #4", "Stop following #4"],
    ]
    assert rows[1][1][1] == "a:9:4:down"
    summary = alert_keyboard(9, [3], {}, feedback=False)
    assert [t for t, _ in summary[0]] == ["🔕", "Stop following"]


def test_preview_data_and_mutes() -> None:
    assert parse_track_data(track_data(7, "keep")) == (7, "keep")
    assert parse_track_data(track_data(7, "f12")) == (7, "f12")
    assert parse_track_data("t:7:drop") is None and parse_track_data("t:x:keep") is None
    assert parse_track_data("t:" + "9" * 17 + ":keep") is None  # no token is that long
    assert mute_until("1d", NOW) == NOW + timedelta(days=1)
    assert mute_until("1w", NOW) == NOW + timedelta(weeks=1)
    assert mute_until("on", NOW) == FOREVER and mute_until("off", NOW) is None


def test_mute_and_sensitivity_commands_parse() -> None:
    def parse(text: str) -> object:
        raw = c.split_command(text)
        assert raw is not None
        parsed = c.parse(raw)
        assert isinstance(parsed, c.Parsed)
        return parsed.value

    assert parse("/mute 3 1d") == c.Choice(3, "1d")
    assert parse("/mute #3") == c.Choice(3, None)
    assert parse("/sensitivity 3 BROAD") == c.Choice(3, "broad")
    assert parse("/test Putin trip to China") == "Putin trip to China"
    for bad in ("/mute", "/mute 3 2d", "/mute x", "/sensitivity 3 loud", "/mute 3 1d 1w"):
        raw = c.split_command(bad)
        assert raw is not None
        with pytest.raises(c.UsageError):
            c.parse(raw)


def _item(key: str) -> Item:
    return Item(key=key, title=f"Report {key}", summary="", link=None, published=NOW,
                source="News")


def test_a_muted_chat_gets_nothing_until_the_mute_ends(db: Database) -> None:
    feed = db.add_feed("https://a.test/rss", now=NOW)
    story = db.add_storyline(Storyline(id=0, title="Putin trip to China"), now=NOW)
    for chat in (1, 2):
        db.upsert_chat(chat, now=NOW)
        db.subscribe(chat, story.id, now=NOW)
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=[_item("a")], matches=[])
    assert db.set_mute(1, story.id, NOW + timedelta(days=1))
    assert not db.set_mute(3, story.id, NOW)  # not a follower
    assert db.mutes(1, NOW) == {story.id: NOW + timedelta(days=1)}

    def poll(key: str, when: datetime) -> list[int]:
        db.commit_poll(feed.id, FeedState(), now=when, title=None, items=[_item(key)],
                       matches=[MatchToStore(Match(key, story.id, 0.9, "why"))])
        return sorted(e.chat_id for e in db.claim_due_alerts(when, 10))

    assert poll("b", NOW + timedelta(hours=1)) == [2]
    assert poll("c", NOW + timedelta(days=1, hours=1)) == [1, 2]  # the day is over
    rows = db.storylines_for_chat(1)
    assert rows[0].muted_until == NOW + timedelta(days=1)


def test_feedback_is_kept_once_per_alert_and_follows_the_storyline(db: Database) -> None:
    feed = db.add_feed("https://a.test/rss", now=NOW)
    story = db.add_storyline(Storyline(id=0, title="Putin trip to China"), now=NOW)
    db.upsert_chat(1, now=NOW)
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=[_item("a")], matches=[])
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=[_item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.42, "why"))])
    item_id = int(db._query("SELECT id FROM items WHERE key = 'b'")[0]["id"])
    for verdict in ("down", "up"):
        db.record_feedback(storyline_id=story.id, chat_id=1, user_id=5, item_id=item_id,
                           verdict=verdict, scope="storyline", title="Report b", summary="",
                           now=NOW)
    rows = db.feedback_rows()
    assert [(r["verdict"], r["user_id"], r["score"]) for r in rows] == [("up", 5, 0.42)]
    assert db.set_sensitivity(story.id, "strict") and db.sensitivities() == {story.id: "strict"}
    db.deactivate_storyline(story.id)
    assert db.feedback_rows() == [] and db.sensitivities() == {}


def test_a_group_that_becomes_a_supergroup_keeps_its_mutes_and_feedback(db: Database) -> None:
    story = db.add_storyline(Storyline(id=0, title="Putin trip to China"), now=NOW)
    db.upsert_chat(-5, now=NOW)
    db.upsert_chat(-1005, now=NOW)  # the supergroup already wrote to the bot
    db.subscribe(-5, story.id, now=NOW)
    db.subscribe(-1005, story.id, now=NOW)
    db.set_mute(-5, story.id, NOW + timedelta(weeks=1))
    db.record_feedback(storyline_id=story.id, chat_id=-5, user_id=1, item_id=None,
                       verdict="down", scope="chat", title="t", summary="", now=NOW)
    db.migrate_chat(-5, -1005)
    assert db.mutes(-1005, NOW) == {story.id: NOW + timedelta(weeks=1)}
    assert [r["chat_id"] for r in db.feedback_rows()] == [-1005]


def test_a_preview_is_taken_once_by_its_own_chat_and_a_chat_keeps_few_open(
    db: Database
) -> None:
    first = db.add_pending_track(chat_id=1, user_id=1, title="Putin trip to China", now=NOW)
    assert db.take_pending_track(first, 2) is None  # another chat's forged press
    assert db.take_pending_track(first, 1) == "Putin trip to China"
    assert db.take_pending_track(first, 1) is None  # decided already
    again = db.add_pending_track(chat_id=1, user_id=1, title="Tesla recall", now=NOW)
    assert again != first and db.take_pending_track(first, 1) is None  # no id reused
    assert db.take_pending_track(again, 1) == "Tesla recall"
    ids = [db.add_pending_track(chat_id=1, user_id=1, title=f"Story {n}", now=NOW)
           for n in range(PENDING_PER_CHAT + 3)]
    other = db.add_pending_track(chat_id=2, user_id=2, title="Other chat", now=NOW)
    assert [db.take_pending_track(i, 1) for i in ids[:3]] == [None] * 3  # the oldest went
    assert db.take_pending_track(ids[-1], 1) == f"Story {PENDING_PER_CHAT + 2}"
    assert db.take_pending_track(other, 2) == "Other chat"  # untouched by chat 1's flood
