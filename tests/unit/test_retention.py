"""Retention against a real SQLite file: what is pruned, what is kept, space returned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from bot.storage.retention import RetentionPolicy, prune

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(items_days=30, alerts_days=180, batch_rows=1)


def item(key: str, summary: str = "") -> Item:
    return Item(key=key, title=f"Title {key}", summary=summary, link=None, published=None,
                source="Wire")


def poll(db: Database, feed_id: int, when: datetime, keys: list[str],
         matched: tuple[str, ...] = (), story: int = 0) -> None:
    db.commit_poll(feed_id, FeedState(), now=when, title="Wire",
                   items=[item(k) for k in keys],
                   matches=[MatchToStore(Match(k, story, 1.0, "why")) for k in matched])


def keys(db: Database) -> set[str]:
    return {r["key"] for r in db._query("SELECT key FROM items")}


def test_prune_deletes_old_history_and_keeps_what_is_still_needed(db: Database) -> None:
    old, mid, recent = NOW - timedelta(days=200), NOW - timedelta(days=40), NOW - timedelta(days=1)
    feed = db.add_feed("https://a.test/rss", now=old)
    static = db.add_feed("https://b.test/rss", now=old)
    story = db.add_storyline(Storyline(0, "Story"), now=old)
    db.upsert_chat(1, now=old)
    db.subscribe(1, story.id, now=old)
    poll(db, feed.id, old - timedelta(hours=1), [])  # primes the feed
    poll(db, feed.id, old, ["sent", "pending"], ("sent", "pending"), story.id)
    rows = {e.item.key: e.id for e in db.claim_due_alerts(old, 10)}
    db.mark_sent(rows["sent"], now=old, message_id=1)
    db.release_claim(rows["pending"], not_before=old, error="held")
    poll(db, feed.id, mid, ["gone", "still"])
    poll(db, feed.id, recent, ["still", "new"])
    poll(db, static.id, mid, ["static"])  # a feed that never changes again

    report = prune(db, NOW, POLICY)

    # Old and unneeded: the sent alert, its match and item; an item gone from its feed.
    # Kept: the pending alert with its match and item; items still in their feed
    # (however old); recent items.
    assert keys(db) == {"pending", "still", "new", "static"}
    assert db.outbox_counts() == {"pending": 1, "sending": 0, "sent": 0, "failed": 0,
                                  "dropped": 0}
    assert [r[0] for r in db._query("SELECT item_id FROM matches")] == [
        r[0] for r in db._query("SELECT id FROM items WHERE key = 'pending'")]
    assert report.deleted["outbox"] == 1 and report.deleted["matches"] == 1
    assert report.deleted["items"] == 2
    assert report.transactions > 4  # one row per batch: many short transactions


def test_recent_alert_history_is_kept(db: Database) -> None:
    when = NOW - timedelta(days=100)  # older than items_days, within alerts_days
    feed = db.add_feed("https://a.test/rss", now=when)
    story = db.add_storyline(Storyline(0, "Story"), now=when)
    db.upsert_chat(1, now=when)
    db.subscribe(1, story.id, now=when)
    poll(db, feed.id, when - timedelta(hours=1), [])
    poll(db, feed.id, when, ["matched", "plain"], ("matched",), story.id)
    [entry] = db.claim_due_alerts(when, 10)
    db.mark_sent(entry.id, now=when, message_id=1)
    poll(db, feed.id, NOW, ["other"])
    prune(db, NOW, POLICY)
    assert keys(db) == {"matched", "other"}
    assert db.outbox_counts()["sent"] == 1


def test_pruning_gives_the_space_back(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "storywatch.db")
    feed = db.add_feed("https://a.test/rss", now=NOW)
    when = NOW - timedelta(days=60)
    db.commit_poll(feed.id, FeedState(), now=when, title="Wire",
                   items=[item(f"k{n}", "x" * 2000) for n in range(3000)], matches=[])
    db.commit_poll(feed.id, FeedState(), now=NOW, title="Wire", items=[item("today")],
                   matches=[])
    before = db.pragma_int("page_count")
    report = prune(db, NOW, RetentionPolicy(batch_rows=500))
    after = db.pragma_int("page_count")
    db.close()
    assert report.deleted["items"] == 3000
    assert report.pages_freed > 0
    assert after < before / 4
    assert (tmp_path / "storywatch.db").stat().st_size < before * 4096 / 4


def test_content_key_recognises_an_item_whose_guid_changed(db: Database) -> None:
    feed = db.add_feed("https://a.test/rss", now=NOW)
    for n in range(5):  # the same two items under new guids at every poll
        db.commit_poll(feed.id, FeedState(), now=NOW + timedelta(minutes=n), title="Wire",
                       items=[Item(f"g:{n}-a", "Wang Yi lands", "in Moscow", "https://w.test/a",
                                   None, "W"),
                              Item(f"g:{n}-b", "Markets", "close", None, None, "W")],
                       matches=[])
    assert db.item_count(feed.id) == 2
    churned = [Item("g:new", "Wang  Yi LANDS", "in Moscow", "https://w.test/a", None, "W"),
               Item("g:other", "Something new", "", None, None, "W"),
               Item("g:briefing", "Wang Yi lands", "in Moscow", "https://w.test/b", None, "W")]
    assert db.known_item_keys(feed.id, churned) == {"g:new"}
