"""The database under faults an operator's year brings: a write lock held by
another process, a full disk, a corrupt or emptied file, a second bot.

Every fault is real: the lock is held by another process (``lock_holder``),
the full disk is SQLite's own ``SQLITE_FULL`` (``PRAGMA max_page_count``), the
corruption is garbage written over the file's pages.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.bootstrap import running_poller
from bot.errors import ConfigError, StorageBusyError, StorageFullError
from bot.health import check_database
from bot.models import FeedState, Item, Storyline
from bot.storage.repository import Database
from tests.e2e.conftest import TOKEN, BotProcess
from tests.reliability.conftest import Table, make_settings
from tests.support.botconfig import write_config
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document
from tests.support.lock_holder import LockHolder

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_a_held_lock_is_waited_out_with_a_bound_then_reported(
    tmp_path: Path, table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "storywatch.db"
    Database.open(path).close()
    db = Database.open(path, busy_timeout=0.2, lock_attempts=3)
    caplog.set_level(logging.WARNING, logger="bot.storage.repository")
    holder = LockHolder(path, 120)
    try:
        with pytest.raises(StorageBusyError) as info:
            db.set_meta("k", "v")
    finally:
        holder.release()
    message = str(info.value)
    assert "locked by another process" in message and str(path) in message
    waits = [r for r in caplog.records if "waiting again" in r.message]
    assert len(waits) == 2  # attempts 2 and 3, then the error
    db.set_meta("k", "v")  # the lock is gone: the same connection writes again
    assert db.get_meta("k") == "v"

    # A lock that goes away before the attempts run out costs nothing but the wait.
    holder = LockHolder(path, 120)
    db2 = Database.open(path, busy_timeout=0.2, lock_attempts=100)
    timer = threading.Timer(1.0, holder.release)
    timer.start()
    try:
        db2.set_meta("k", "after the lock")
    finally:
        timer.join()
    assert db2.get_meta("k") == "after the lock"
    db.close()
    db2.close()
    table.row(
        "**Write lock held by another process** (Database)", "lock held past 3 attempts; "
        "then a lock released after 1 s", 2,
        "StorageBusyError naming the database and what to look for, after 2 logged "
        "waits; the released lock: the write succeeds",
    )


def test_poll_once_under_a_held_lock_reports_clearly(tmp_path: Path, table: Table) -> None:
    with FeedServer() as server:
        server.set_route("/rss", Route(body=rss_document("Wire", [
            {"guid": "1", "title": "Wang Yi in Moscow", "link": "https://n.test/1"}])))
        config = write_config(tmp_path, [server.url("/rss")], log_level="WARNING")
        with config.open("a", encoding="utf-8") as f:
            f.write("\n[storage]\nbusy_timeout_seconds = 0.3\nlock_attempts = 2\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STORYWATCH_",))}
        env.update({
            "STORYWATCH_DATA_DIR": str(tmp_path / "data"), "STORYWATCH_CONFIG": str(config),
            "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true", "PYTHONPATH": str(REPO),
        })

        def poll() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bot", "poll", "--once"], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120, check=False,
            )

        assert poll().returncode == 0  # creates and primes the database
        holder = LockHolder(tmp_path / "data" / "storywatch.db", 120)
        try:
            result = poll()
        finally:
            holder.release()
    assert result.returncode == 1, result.stderr
    assert "locked by another process" in result.stderr
    assert "Traceback" not in result.stderr and "OperationalError:" not in result.stderr
    table.row(
        "`poll --once` under a held write lock", "lock held by another process", 1,
        "exit 1 with \"database … is locked by another process …\", no traceback",
    )


def big_item(n: int) -> Item:
    return Item(key=f"k{n}", title=f"Item {n}", summary="x" * 900, link=None,
                published=NOW, source="Wire")


def test_disk_full_is_reported_as_such_and_the_database_goes_on(
    tmp_path: Path, table: Table
) -> None:
    db = Database.open(tmp_path / "storywatch.db")
    feed = db.add_feed("https://a.test/rss", now=NOW)
    pages = int(db._query("PRAGMA page_count")[0][0])
    # SQLite's own SQLITE_FULL, as a full file system gives it: the file may not grow.
    db._query(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StorageFullError) as info:
        db.commit_poll(feed.id, FeedState(), now=NOW, title="Wire",
                       items=[big_item(n) for n in range(200)], matches=[])
    assert "database or disk is full" in str(info.value)
    assert "internal error" not in str(info.value)
    assert db.item_count(feed.id) == 0  # the transaction was rolled back whole
    db._query(f"PRAGMA max_page_count = {pages + 10_000}")  # space freed
    db.commit_poll(feed.id, FeedState(), now=NOW, title="Wire",
                   items=[big_item(n) for n in range(200)], matches=[])
    assert db.item_count(feed.id) == 200
    assert db.integrity_check() == "ok"
    db.close()
    table.row(
        "**Disk full** (SQLITE_FULL through `PRAGMA max_page_count`)", "a poll commit "
        "of 200 items that does not fit", 1,
        "StorageFullError \"database or disk is full …\"; rollback handled; nothing "
        "half-written; the same connection writes once space is back",
    )


async def test_disk_full_stops_the_pass_clearly_not_as_internal_errors(tmp_path: Path) -> None:
    with FeedServer() as server:
        items = [{"guid": str(n), "title": f"Story {n}", "description": "y" * 900,
                  "link": f"https://n.test/{n}"} for n in range(200)]
        server.set_route("/rss", Route(body=rss_document("Wire", items)))
        settings = make_settings(tmp_path)
        db = Database.open(settings.database_path)
        db.add_feed(server.url("/rss"), now=NOW)
        pages = int(db._query("PRAGMA page_count")[0][0])
        db._query(f"PRAGMA max_page_count = {pages + 2}")
        async with running_poller(settings, db) as poller:
            with pytest.raises(StorageFullError):
                await poller.poll_due()
        assert db.get_meta("internal_errors.last_poll") is None
        db.close()


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):
        data[offset : offset + 100] = bytes(range(100))
    path.write_bytes(bytes(data))


def test_corrupt_and_emptied_databases_are_refused(tmp_path: Path, table: Table) -> None:
    path = tmp_path / "storywatch.db"
    db = Database.open(path)
    for n in range(300):
        db.add_feed(f"https://feed{n}.test/{'x' * 200}", now=NOW)
    db.upsert_chat(42, now=NOW)
    db.close()
    corrupt(path)
    with pytest.raises(ConfigError, match=r"is corrupt .*quick_check.*restore a backup"):
        Database.open(path)
    verdict = check_database(path, 60, NOW)
    assert not verdict.ok and "corrupt" in verdict.describe()

    empty = tmp_path / "emptied.db"
    db = Database.open(empty)
    db.upsert_chat(42, now=NOW)
    db.close()
    empty.write_bytes(b"")  # what a failed copy or a full disk at the wrong moment leaves
    with pytest.raises(ConfigError, match=r"empty \(0-byte\) file"):
        Database.open(empty)
    assert empty.stat().st_size == 0  # not silently recreated empty
    table.row(
        "**Corrupt database**; **0-byte file** where the database was", "garbage over "
        "every page after the second; the file truncated to 0 bytes", 2,
        "start refused (\"is corrupt (PRAGMA quick_check: …)\", \"empty (0-byte) file … "
        "restore a backup\"); `health` unhealthy \"database … is corrupt\"; the 0-byte "
        "file left as it was",
    )


def test_a_second_bot_on_the_same_database_refuses_to_start(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    config = write_config(tmp_path, [])
    first = BotProcess(tmp_path, fake, config, {})
    try:
        first.start()
        # An alert the first bot is sending right now.
        conn = sqlite3.connect(tmp_path / "data" / "storywatch.db")
        with conn:
            conn.execute("INSERT INTO chats(id, created_at) VALUES (7, 'x')")
            conn.execute("INSERT INTO storylines(title, created_at) VALUES ('s', 'x')")
            conn.execute("INSERT INTO items(feed_id, key, title, summary, source, first_seen) "
                         "VALUES (NULL, 'k', 't', '', 'src', 'x')")
            conn.execute("INSERT INTO outbox(chat_id, storyline_id, item_id, status, "
                         "created_at, claimed_at) VALUES (7, 1, 1, 'sending', 'x', ?)",
                         (datetime.now(UTC).isoformat(),))
        second = subprocess.run(
            [sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=first.env(),
            capture_output=True, text=True, timeout=120, check=False,
        )
        status = conn.execute("SELECT status FROM outbox").fetchone()[0]
        conn.close()
        assert first.proc is not None and first.proc.poll() is None  # the first runs on
    finally:
        first.close()
    assert second.returncode == 2
    assert "another Storywatch bot (pid" in second.stderr
    assert status == "sending"  # its in-flight alert was left alone
    assert TOKEN not in second.stderr
    table.row(
        "**A second `storywatch run`** on the same database", "second process started "
        "while the first sends", 1,
        "exit 2 \"another Storywatch bot (pid N) is already running on …\"; the first "
        "one's in-flight alert untouched",
    )


def test_stale_claims_are_recovered_while_running(db: Database) -> None:
    """Claims older than the lease go back to pending; those still in flight stay."""
    feed = db.add_feed("https://a.test/rss", now=NOW)
    story = db.add_storyline(Storyline(id=0, title="s"), now=NOW)
    db.upsert_chat(1, now=NOW)
    db.subscribe(1, story.id, now=NOW)
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=[], matches=[])
    from bot.models import Match
    from bot.storage.repository import MatchToStore

    items = [big_item(n) for n in range(3)]
    db.commit_poll(feed.id, FeedState(), now=NOW, title=None, items=items,
                   matches=[MatchToStore(Match(i.key, story.id, 1.0, "r")) for i in items])
    claimed = db.claim_due_alerts(NOW, 10)
    assert len(claimed) == 3
    later = NOW + timedelta(minutes=10)
    assert db.recover_expired_claims(later, timedelta(minutes=20)) == 0  # within the lease
    recovered = db.recover_expired_claims(later, timedelta(minutes=5), keep={claimed[0].id})
    assert recovered == 2
    assert db.outbox_counts()["pending"] == 2 and db.outbox_counts()["sending"] == 1
