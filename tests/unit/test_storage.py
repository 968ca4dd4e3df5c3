"""The repository against a real SQLite file: migrations, the poll transaction, the outbox."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, DuplicateError, MatchToStore
from bot.storage.schema import LATEST_VERSION
from tests.support.engines import fresh_schema, integrity_errors

NOW = datetime(2023, 9, 18, 12, 0, tzinfo=UTC)


def item(key: str, title: str = "Wang Yi arrives in Moscow") -> Item:
    return Item(key=key, title=title, summary="", link=f"https://news.test/{key}",
                published=NOW, source="News")


def test_schema_is_created_versioned_and_in_wal(sqlite_db: Database, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "data" / "storywatch.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert sqlite_db.integrity_check() == "ok"


def test_postgres_schema_is_versioned_with_real_timestamps() -> None:
    import psycopg

    with fresh_schema() as url:
        first = Database.open_postgres(url)
        first.add_feed("https://a.test/rss", now=NOW)
        first.close()
        again = Database.open_postgres(url)  # a second open migrates nothing
        assert [f.url for f in again.list_feeds()] == ["https://a.test/rss"]
        again.close()
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchone() == (
                LATEST_VERSION,)
            kinds = dict(conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'feeds'"
            ).fetchall())
            assert kinds["added_at"] == "timestamp with time zone"
            assert kinds["next_check"] == "timestamp with time zone"
            assert kinds["id"] == "bigint"
            conn.execute("UPDATE schema_version SET version = %s", (LATEST_VERSION + 1,))
        with pytest.raises(ConfigError, match="newer"):
            Database.open_postgres(url)


def test_reopening_keeps_data_and_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = Database.open(path)
    first.add_feed("https://a.test/rss", now=NOW)
    first.close()
    again = Database.open(path)
    assert [f.url for f in again.list_feeds()] == ["https://a.test/rss"]
    again.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        Database.open(path)


def test_duplicate_feed(db: Database) -> None:
    db.add_feed("https://a.test/rss", now=NOW)
    with pytest.raises(DuplicateError):
        db.add_feed("https://a.test/rss", now=NOW)


def _setup(db: Database) -> tuple[int, Storyline]:
    feed = db.add_feed("https://a.test/rss", now=NOW)
    story = db.add_storyline(Storyline(id=0, title="Wang Yi visits Russia"), now=NOW)
    for chat in (1, 2, 3):
        db.upsert_chat(chat, now=NOW)
    db.subscribe(1, story.id, now=NOW)
    db.subscribe(2, story.id, now=NOW)
    return feed.id, story


def test_first_poll_primes_without_alerts(db: Database) -> None:
    feed_id, story = _setup(db)
    commit = db.commit_poll(
        feed_id, FeedState(etag='"1"'), now=NOW, title="A", items=[item("a")],
        matches=[MatchToStore(Match("a", story.id, 0.9, "Wang Yi"))],
    )
    assert (commit.new_items, commit.matches, commit.alerts) == (1, 0, 0)
    feed = db.get_feed(feed_id)
    assert feed is not None and feed.primed and feed.state.etag == '"1"' and feed.title == "A"


def test_new_item_fans_out_once_to_subscribed_active_chats(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("a")], matches=[])
    later = NOW + timedelta(minutes=5)
    match = MatchToStore(Match("b", story.id, 0.9, "Wang Yi; Moscow"))
    commit = db.commit_poll(feed_id, FeedState(), now=later, title=None,
                            items=[item("a"), item("b")], matches=[match])
    assert (commit.new_items, commit.matches, commit.alerts) == (1, 1, 2)
    # The same body again adds nothing.
    again = db.commit_poll(feed_id, FeedState(), now=later + timedelta(minutes=5), title=None,
                           items=[item("a"), item("b")], matches=[match])
    assert (again.new_items, again.matches, again.alerts) == (0, 0, 0)
    claimed = db.claim_due_alerts(later, 10)
    assert sorted(e.chat_id for e in claimed) == [1, 2]
    assert all(e.item.key == "b" and e.reason == "Wang Yi; Moscow" for e in claimed)
    assert db.claim_due_alerts(later, 10) == []  # claimed rows are not handed out twice


def test_changed_title_keeps_identity(db: Database) -> None:
    feed_id, _ = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("a")], matches=[])
    commit = db.commit_poll(feed_id, FeedState(), now=NOW + timedelta(1), title=None,
                            items=[item("a", "Wang Yi lands in Moscow")], matches=[])
    assert commit.new_items == 0
    assert [i.title for i in db.recent_items(10)] == ["Wang Yi lands in Moscow"]


def test_failed_transaction_writes_nothing(db: Database) -> None:
    feed_id, _ = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    bad = MatchToStore(Match("x", 999_999, 0.9, "no such storyline"))
    with pytest.raises(integrity_errors()):
        db.commit_poll(feed_id, FeedState(), now=NOW + timedelta(1), title=None,
                       items=[item("x")], matches=[bad])
    assert db.known_keys(feed_id, ["x"]) == set()


def test_outbox_retry_sent_recover_and_counts(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.9, "r"))])
    first, second = db.claim_due_alerts(NOW, 10)
    db.mark_sent(first.id, now=NOW, message_id=77)
    db.mark_retry(second.id, not_before=NOW + timedelta(seconds=30), error="429")
    assert db.claim_due_alerts(NOW, 10) == []
    retried = db.claim_due_alerts(NOW + timedelta(seconds=31), 10)
    assert [e.id for e in retried] == [second.id] and retried[0].attempts == 2
    # A crash while 'sending' puts it back to pending on restart.
    assert db.recover_in_flight() == 1
    assert db.outbox_counts()["pending"] == 1 and db.outbox_counts()["sent"] == 1


def test_blocked_chat_drops_its_pending_alerts(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.9, "r"))])
    db.deactivate_chat(2, "bot was blocked by the user")
    assert [e.chat_id for e in db.claim_due_alerts(NOW, 10)] == [1]
    assert db.outbox_counts()["dropped"] == 1
    assert not db.chat_is_active(2)
    db.upsert_chat(2, now=NOW)  # /start again reactivates
    assert db.chat_is_active(2)


def test_migrated_group_keeps_subscriptions_and_pending_alerts(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.9, "r"))])
    db.migrate_chat(2, -100200)
    rows = db.storylines_for_chat(-100200)
    assert [r.subscribed for r in rows] == [True]
    assert sorted(e.chat_id for e in db.claim_due_alerts(NOW, 10)) == [-100200, 1]


def test_migrated_group_keeps_its_own_storylines_and_settings(db: Database) -> None:
    db.upsert_chat(-5, now=NOW, type_="group")
    db.set_chat_tz(-5, "Europe/Paris")
    own = db.add_storyline(Storyline(0, "Group story"), now=NOW, created_by=-5)
    db.upsert_chat(-1005, now=NOW, type_="supergroup")  # the new id wrote first
    db.migrate_chat(-5, -1005)
    assert db.count_storylines_created_by(-1005) == 1 and db.count_storylines_created_by(-5) == 0
    found = db.find_storyline_by_title(-1005, "group STORY")
    assert found is not None and (found.id, found.owner) == (own.id, -1005)
    assert db.chat_tz(-1005) == "Europe/Paris"
    assert db.chat_figures(-1005).created == 1


def test_a_preview_sent_before_a_group_moved_is_taken_from_its_new_id(db: Database) -> None:
    db.upsert_chat(-7, now=NOW, type_="group")
    token = db.add_pending_track(chat_id=-7, user_id=3, title="Lula visit to China", now=NOW)
    db.migrate_chat(-7, -1007)
    assert db.take_pending_track(token, -7) is None
    assert db.take_pending_track(token, -1007) == "Lula visit to China"


def test_duplicate_becomes_an_edit_after_its_parent(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("a")],
                   matches=[MatchToStore(Match("a", story.id, 0.9, "r"))])
    dup = MatchToStore(Match("b", story.id, 0.8, "r"), duplicate_of_key=(feed_id, "a"))
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")], matches=[dup])
    sends = db.claim_due_alerts(NOW, 10)
    assert {e.kind for e in sends} == {"send"}  # edits wait for their parent's message id
    for e in sends:
        db.mark_sent(e.id, now=NOW, message_id=100 + e.chat_id)
    edits = db.claim_due_alerts(NOW, 10)
    assert {(e.kind, e.parent_message_id) for e in edits} == {("edit", 101), ("edit", 102)}
    assert [i.key for i in db.duplicates_of(sends[0].id)] == ["b"]
    recent = db.recent_matches([story.id], NOW - timedelta(hours=1))
    assert [r.item.key for r in recent] == ["a"]  # duplicates are not candidates themselves


def test_storylines_for_chat(db: Database) -> None:
    _, story = _setup(db)
    shared = db.upsert_shared_storyline(
        Storyline(id=0, title="Putin in China", slug="putin-china", shared=True,
                  aliases=(("Vladimir Putin", ("Putin",)),), keywords=("Belt and Road",)),
        now=NOW,
    )
    again = db.upsert_shared_storyline(
        Storyline(id=0, title="Putin in Beijing", slug="putin-china", shared=True), now=NOW
    )
    assert again.id == shared.id and again.title == "Putin in Beijing"
    assert {r.storyline.id for r in db.storylines_for_chat(3)} == {shared.id}
    assert {r.storyline.id: r.subscribed for r in db.storylines_for_chat(1)} == {
        story.id: True, shared.id: False}
    assert db.subscribe(3, shared.id, now=NOW) and not db.subscribe(3, shared.id, now=NOW)
    assert db.unsubscribe(3, shared.id) and not db.unsubscribe(3, shared.id)
    assert db.deactivate_storyline(story.id)
    assert db.get_storyline(story.id) is None


def _two_storylines_one_item(db: Database) -> tuple[int, Storyline, Storyline]:
    """Chat 1 follows both storylines, chat 2 only the first; item "b" matches both."""
    feed_id, story = _setup(db)
    other = db.add_storyline(Storyline(id=0, title="Putin trip to China"), now=NOW)
    db.subscribe(1, other.id, now=NOW)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.9, "Wang Yi")),
                            MatchToStore(Match("b", other.id, 0.8, "Putin"))])
    return feed_id, story, other


def test_removed_storyline_or_unsubscribed_chat_gets_no_queued_alert(db: Database) -> None:
    _, story, other = _two_storylines_one_item(db)
    assert db.unsubscribe(2, story.id)
    assert db.deactivate_storyline(other.id)
    claimed = db.claim_due_alerts(NOW, 10)
    assert [(e.chat_id, e.storyline_id) for e in claimed] == [(1, story.id)]
    assert db.outbox_counts()["dropped"] == 2


def test_outbox_entry_reads_any_row(db: Database) -> None:
    feed_id, story = _setup(db)
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[], matches=[])
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("b")],
                   matches=[MatchToStore(Match("b", story.id, 0.9, "why"))])
    first = db.claim_due_alerts(NOW, 1)[0]
    db.mark_sent(first.id, now=NOW, message_id=5)
    again = db.outbox_entry(first.id)
    assert again is not None and again.item.key == "b" and again.reason == "why"
    assert db.outbox_entry(999) is None


def test_storyline_owner_is_the_creating_chat_and_none_when_shared(db: Database) -> None:
    mine = db.add_storyline(Storyline(id=0, title="Putin trip to China"), now=NOW, created_by=42)
    assert mine.owner == 42
    assert db.add_storyline(Storyline(id=0, title="Belt and Road Forum"), now=NOW).owner is None
    shared = db.add_storyline(
        Storyline(id=0, title="Belt and Road Forum", shared=True, slug="bri"),
        now=NOW, created_by=42,
    )
    assert shared.owner is None
    seeded = db.upsert_shared_storyline(
        Storyline(id=0, title="Putin in China", slug="putin-china", shared=True), now=NOW
    )
    assert seeded.owner is None



def test_rows_of_one_chat_and_item_are_claimed_together_past_the_limit(db: Database) -> None:
    _, story, other = _two_storylines_one_item(db)
    first = db.claim_due_alerts(NOW, 1)
    assert [(e.chat_id, e.storyline_id) for e in first] == [(1, story.id), (1, other.id)]
    assert first[0].item_id == first[1].item_id
    assert [(e.chat_id, e.storyline_id) for e in db.claim_due_alerts(NOW, 1)] == [(2, story.id)]


def test_a_message_is_marked_and_redrawn_as_a_whole(db: Database) -> None:
    feed_id, story, other = _two_storylines_one_item(db)
    rows = [e for e in db.claim_due_alerts(NOW, 10) if e.chat_id == 1]
    ids = [e.id for e in rows]
    db.release_claim(ids, not_before=NOW + timedelta(seconds=5), error="429")
    assert db.claim_due_alerts(NOW, 10) == []
    again = db.claim_due_alerts(NOW + timedelta(seconds=6), 10)
    assert [e.id for e in again] == ids and {e.attempts for e in again} == {1}
    db.mark_sent(ids, now=NOW, message_id=42)
    assert [(e.storyline_id, e.message_id) for e in db.message_rows(ids[1])] == [
        (story.id, 42), (other.id, 42)]
    # A later report of the same development for both storylines: two edit rows,
    # one more item for the message.
    db.commit_poll(feed_id, FeedState(), now=NOW, title=None, items=[item("c")],
                   matches=[MatchToStore(Match("c", s.id, 0.9, "r"), (feed_id, "b"))
                            for s in (story, other)])
    edits = [e for e in db.claim_due_alerts(NOW, 10) if e.chat_id == 1]
    assert {(e.kind, e.parent_message_id) for e in edits} == {("edit", 42)} and len(edits) == 2
    assert [i.key for i in db.duplicates_of(ids)] == ["c"]
