"""Retention against a real SQLite file: what is pruned, what is kept, space returned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import FEEDBACK_KEPT, Database, MatchToStore
from bot.storage.retention import PREVIEW_HOURS, RetentionPolicy, prune

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


def test_feedback_no_pass_reads_and_stale_previews_are_pruned(db: Database) -> None:
    kept_story = db.add_storyline(Storyline(0, "Putin trip to China"), now=NOW, created_by=1)
    removed = db.add_storyline(Storyline(0, "Tesla recall"), now=NOW, created_by=1)

    def press(sid: int, verdict: str, n: int, *, chat: int = 1, scope: str = "storyline",
              old: bool = True) -> None:
        for k in range(n):
            when = NOW - timedelta(days=400 if old else 1)
            db.record_feedback(storyline_id=sid, chat_id=chat, user_id=chat, item_id=None,
                               verdict=verdict, scope=scope, title=f"{verdict} {k}",
                               summary="", now=when)

    press(kept_story.id, "down", FEEDBACK_KEPT + 3)  # three more than any pass reads
    press(kept_story.id, "up", 2)  # old, but still what taught the storyline
    press(kept_story.id, "down", 4, chat=2, scope="chat", old=False)  # a chat's own
    press(removed.id, "down", 2)
    db.deactivate_storyline(removed.id)
    read_before = [dict(r) for r in db.feedback_rows()]
    stale = db.add_pending_track(chat_id=1, user_id=1, title="Old preview",
                                 now=NOW - timedelta(hours=PREVIEW_HOURS + 1))
    fresh = db.add_pending_track(chat_id=1, user_id=1, title="New preview",
                                 now=NOW - timedelta(hours=1))

    report = prune(db, NOW, POLICY)

    assert report.deleted["feedback"] == 3 + 2 and report.deleted["pending_tracks"] == 1
    assert [dict(r) for r in db.feedback_rows()] == read_before  # what teaches is intact
    left = db._query("SELECT storyline_id, title FROM feedback WHERE verdict = 'down' "
                     "AND scope = 'storyline' ORDER BY id")
    assert {r["storyline_id"] for r in left} == {kept_story.id}
    assert [r["title"] for r in left][:1] == ["down 3"]  # the oldest three went
    assert len(db._query("SELECT id FROM feedback")) == FEEDBACK_KEPT + 2 + 4
    assert db.take_pending_track(stale, 1) is None
    assert db.take_pending_track(fresh, 1) == "New preview"
    assert prune(db, NOW, POLICY).deleted["feedback"] == 0
