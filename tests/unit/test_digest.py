"""Digests: rendering (grouping, order, splitting with "(continued)") and building them
from the outbox of a real SQLite file (held rows, once per slot, nothing lost)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from bot.delivery.digest import Development, as_plain, render_digest
from bot.delivery.render import tg_len
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.support.fake_telegram import validate_telegram_html

SLOT = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)


def dev(sid: int, n: int, hours_ago: float, **kw: object) -> Development:
    return Development(
        storyline_id=sid, storyline_title=f"Story {sid}", title=f"Headline {n}",
        link=f"https://e.org/{n}", when=SLOT - timedelta(hours=hours_ago), **kw,  # type: ignore[arg-type]
    )


def test_grouped_by_storyline_newest_first_each_development_once() -> None:
    devs = [dev(1, 1, 5), dev(2, 2, 1), dev(1, 3, 0.5, outlets=("Reuters", "AP", "Reuters"),
                                            duplicates=2), dev(2, 4, 3, also=(1,))]
    [part] = render_digest(devs, SLOT, "Europe/Paris")
    assert validate_telegram_html(part) is None
    assert part.startswith("🗞 <b>Digest</b> · 18:00 CET, 2 Dec 2026 · 4 developments in "
                           "2 storylines")
    text = as_plain(part)
    # Story 1 moved last (Headline 3), so it comes first; in each, newest first.
    order = re.findall(r"Headline (\d)", text)
    assert order == ["3", "1", "2", "4"]
    assert text.index("Story 1 (#1)") < text.index("Story 2 (#2)")
    assert "Headline 3</a> — Reuters, AP (3 reports)" in part
    assert "Headline 4</a> (also #1)" in part
    assert "• 17:30 " in text  # times in the chat's zone


def test_a_long_digest_is_split_under_4096_with_continued() -> None:
    devs = [dev(1 + n % 3, n, n, outlets=("Outlet " + "é" * 30,)) for n in range(120)]
    devs = [Development(d.storyline_id, d.storyline_title, d.title + " 🚀" * 40, d.link, d.when,
                        d.outlets) for d in devs]
    parts = render_digest(devs, SLOT, None)
    assert len(parts) >= 3
    for i, part in enumerate(parts):
        assert tg_len(part) <= 4096, i
        assert validate_telegram_html(part) is None, i
        assert ("(continued)" in part.split("\n")[0]) == (i > 0)
    # Each development exactly once over all parts.
    told = [int(n) for p in parts for n in re.findall(r">Headline (\d+) ", p)]
    assert sorted(told) == list(range(120))
    # A storyline that runs on into the next part says so.
    assert any(re.search(r"\(#\d, continued\)", p) for p in parts[1:])


def _world(db: Database, now: datetime) -> tuple[int, int, int]:
    feed = db.add_feed("http://127.0.0.1:9/f.xml", now=now, title="F")
    db.commit_poll(feed.id, FeedState(), now=now, title="F", items=[], matches=[])
    s1 = db.add_storyline(Storyline(0, "Wang Yi visit"), now=now)
    s2 = db.add_storyline(Storyline(0, "Putin trip"), now=now)
    for chat in (10, 20):
        db.upsert_chat(chat, now=now)
        db.subscribe(chat, s1.id, now=now)
        db.subscribe(chat, s2.id, now=now)
    return feed.id, s1.id, s2.id


def _publish(db: Database, feed: int, now: datetime, keys: list[str], sids: list[int],
             dup_of: str | None = None, source: str = "Src") -> None:
    items = [Item(k, f"Headline {k}", "", f"https://e.org/{k}", now, source, feed) for k in keys]
    db.commit_poll(feed, FeedState(), now=now, title="F", items=items, matches=[
        MatchToStore(Match(k, sid, 1.0, "why"), None if dup_of is None else (feed, dup_of))
        for k in keys for sid in sids])


def test_held_alerts_become_one_digest_once_per_slot(db: Database) -> None:
    now = datetime(2026, 12, 2, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    feed, s1, s2 = _world(db, now)
    db.set_chat_tz(10, "Europe/Paris")
    db.set_chat_delivery(10, "quiet", quiet="22:00-07:00")
    _publish(db, feed, now, ["a", "b"], [s1, s2])  # each item matched both storylines
    _publish(db, feed, now + timedelta(minutes=5), ["c"], [s1], dup_of="a", source="AP")
    # Chat 20 is instant: its alerts are claimable now; chat 10's are held.
    claimed = db.claim_due_alerts(now + timedelta(minutes=6), 50)
    assert {e.chat_id for e in claimed} == {20}
    assert db.held_count(10) == 4  # a and b under two storylines (c is a repeat of a)
    assert db.build_due_digests(now + timedelta(hours=8)) == []  # 06:30 in Paris: quiet
    built = db.build_due_digests(now + timedelta(hours=8, minutes=30))  # 07:00: over
    assert len(built) == 1
    assert db.build_due_digests(now + timedelta(hours=10)) == []  # never twice
    assert db.held_count(10) == 0
    [job] = db.claim_due_digests(now + timedelta(hours=10), 10)
    [part] = job.parts
    assert "2 developments in 1 storyline" in part  # each item once, naming the other
    assert part.count("Headline a") == 1 and "(also #2)" in part
    assert "Headline a</a> — Src, AP (2 reports)" in part
    db.digest_part_sent(job.id, 0, message_id=77, now=now + timedelta(hours=10))
    statuses = db._query("SELECT status, message_id, COUNT(*) FROM outbox WHERE chat_id = 10 "
                         "GROUP BY status, message_id")
    assert [tuple(r) for r in statuses] == [("sent", 77, 5)]
    assert db.digest_counts()["sent"] == 1


def test_a_repeat_of_a_development_told_in_a_digest_is_not_told_again(db: Database) -> None:
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    feed, s1, _ = _world(db, now)
    db.set_chat_delivery(10, "digest", times="12:00")
    _publish(db, feed, now, ["a"], [s1])
    [digest_id] = db.build_due_digests(now + timedelta(hours=2))
    _publish(db, feed, now + timedelta(hours=3), ["a2"], [s1], dup_of="a", source="AP")
    assert db.held_count(10) == 0 and db.build_due_digests(now + timedelta(days=2)) == []
    assert digest_id


def test_digest_only_storyline_of_an_instant_chat(db: Database) -> None:
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    feed, s1, s2 = _world(db, now)
    assert db.set_digest_only(10, s2, True)
    assert not db.set_digest_only(10, 999, True)
    _publish(db, feed, now, ["x"], [s1])
    _publish(db, feed, now, ["y"], [s2])
    claimed = db.claim_due_alerts(now, 50)
    assert sorted((e.chat_id, e.storyline_id) for e in claimed) == [
        (10, s1), (20, s1), (20, s2)]
    assert db.digest_only_storylines(10) == [(s2, "Putin trip")]
    # Instant chats get digest-only storylines at the digest times (18:00 by default).
    assert db.build_due_digests(now + timedelta(hours=7, minutes=59)) == []
    assert len(db.build_due_digests(now + timedelta(hours=8))) == 1


def test_switching_to_instant_sends_what_waited_at_once(db: Database) -> None:
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    feed, s1, _ = _world(db, now)
    db.set_chat_delivery(10, "digest", times="08:00")
    _publish(db, feed, now, ["a", "b"], [s1])
    db.set_chat_delivery(10, "instant")
    assert db.chat_delivery(10).digest_times == (time(8),)  # kept for next time
    assert db.build_digest_now(10, now) is not None
    assert db.build_digest_now(10, now) is None
    [job] = db.claim_due_digests(now, 10)
    assert "2 developments" in job.parts[0]


def test_a_chat_that_blocks_the_bot_drops_its_digests(db: Database) -> None:
    now = datetime(2026, 12, 2, 10, tzinfo=UTC)
    feed, s1, _ = _world(db, now)
    db.set_chat_delivery(10, "digest", times="11:00")
    _publish(db, feed, now, ["a"], [s1])
    db.build_due_digests(now + timedelta(hours=1))
    db.deactivate_chat(10, "403: blocked")
    assert db.digest_counts()["dropped"] == 1
    assert db.claim_due_digests(now + timedelta(hours=2), 10) == []


def test_sent_digests_are_pruned_with_the_alert_history(db: Database) -> None:
    from bot.storage.retention import RetentionPolicy, prune

    now = datetime(2026, 1, 2, 10, tzinfo=UTC)
    feed, s1, _ = _world(db, now)
    db.set_chat_delivery(10, "digest", times="11:00")
    _publish(db, feed, now, ["a"], [s1])
    [digest_id] = db.build_due_digests(now + timedelta(hours=1))
    db.set_meta(f"digest.uncertain.{digest_id}.0", "x")
    assert prune(db, now + timedelta(days=10), RetentionPolicy()).deleted.get("digests") == 0
    [job] = db.claim_due_digests(now + timedelta(hours=1), 5)
    db.digest_part_sent(job.id, 0, message_id=5, now=now + timedelta(hours=1))
    report = prune(db, now + timedelta(days=200), RetentionPolicy())
    assert report.deleted["digests"] == 1 and db.digest_counts()["sent"] == 0
    assert db.get_meta(f"digest.uncertain.{digest_id}.0") is None
    assert db.outbox_counts()["sent"] == 0  # its alerts went with the history
