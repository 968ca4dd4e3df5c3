"""Alert storms at the outbox: the hourly bound per chat and storyline, the
summary, and "+N more" edits folded into one pending edit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.models import FeedState, Item, Match, Storyline
from bot.storage.engine import as_datetime
from bot.storage.repository import Database, MatchToStore

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def world(db: Database) -> tuple[int, int]:
    feed = db.add_feed("https://a.test/rss", now=NOW)
    story = db.add_storyline(Storyline(0, "Story"), now=NOW)
    db.upsert_chat(1, now=NOW)
    db.subscribe(1, story.id, now=NOW)
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=[], matches=[])
    return feed.id, story.id


def publish(db: Database, feed: int, story: int, keys: list[str], when: datetime,
            dup_of: str | None = None) -> None:
    db.commit_poll(
        feed, FeedState(), now=when, title=None,
        items=[Item(k, f"Title {k}", "", f"https://a.test/{k}", None, "W") for k in keys],
        matches=[MatchToStore(Match(k, story, 1.0, "r"), (feed, dup_of) if dup_of else None)
                 for k in keys],
        hourly_limit=3,
    )


def rows(db: Database) -> list[tuple[str, str, int]]:
    return [(r["kind"], r["status"], r["summary_count"])
            for r in db._query("SELECT * FROM outbox ORDER BY id")]


def test_past_the_hourly_limit_matches_go_into_one_summary(db: Database) -> None:
    feed, story = world(db)
    publish(db, feed, story, [f"a{n}" for n in range(10)], NOW)
    publish(db, feed, story, [f"b{n}" for n in range(5)], NOW + timedelta(minutes=5))
    assert rows(db) == [("send", "pending", 0)] * 3 + [("send", "pending", 12)]
    [summary] = [r for r in db._query("SELECT * FROM outbox WHERE summary_count > 0")]
    assert as_datetime(summary["not_before"]) == NOW + timedelta(hours=1)
    held = db.held_items(1, story, NOW, 5)
    assert [i.key for i in held] == ["b4", "b3", "b2", "b1", "b0"]
    # An hour later alerts flow again.
    publish(db, feed, story, ["c0"], NOW + timedelta(hours=1, minutes=1))
    assert rows(db)[-1] == ("send", "pending", 0)


def test_duplicates_fold_into_one_pending_edit_and_count_against_the_limit(
    db: Database
) -> None:
    feed, story = world(db)
    publish(db, feed, story, ["first"], NOW)
    publish(db, feed, story, ["dup1", "dup2", "dup3"], NOW + timedelta(minutes=1),
            dup_of="first")
    assert rows(db) == [("send", "pending", 0), ("edit", "pending", 0),
                        ("edit", "dropped", 0), ("edit", "dropped", 0)]
    [entry] = [e for e in db.claim_due_alerts(NOW, 10) if e.kind == "send"]
    assert [i.key for i in db.duplicates_of(entry.id)] == ["dup1", "dup2", "dup3"]
    # Two messages so far (the alert, one edit); the limit of 3 allows one more.
    publish(db, feed, story, ["x", "y"], NOW + timedelta(minutes=2))
    assert rows(db)[-2:] == [("send", "pending", 0), ("send", "pending", 1)]
