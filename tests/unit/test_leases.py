"""Work shared by many workers, on both engines: feeds leased for one poll, named leases."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

from bot.delivery.election import SenderSeat, holder_id, holder_is_dead
from bot.models import FeedState
from bot.storage.repository import Database

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def add_feeds(db: Database, n: int) -> list[int]:
    return [db.add_feed(f"https://f{i}.test/rss", now=NOW).id for i in range(n)]


def test_two_workers_lease_different_feeds_and_a_polled_feed_waits_its_interval(
    db: Database,
) -> None:
    ids = add_feeds(db, 5)
    a = db.lease_due_feeds(NOW, worker="a", lease=LEASE, limit=3)
    b = db.lease_due_feeds(NOW, worker="b", lease=LEASE, limit=3)
    assert [f.id for f in a] == ids[:3] and [f.id for f in b] == ids[3:]
    assert db.lease_due_feeds(NOW, worker="a", lease=LEASE, limit=3) == []
    # Polled: the lease ends and the next check is an interval away.
    db.record_feed_state(ids[0], FeedState(next_check=NOW + timedelta(minutes=5)), now=NOW)
    later = NOW + timedelta(minutes=1)
    assert db.lease_due_feeds(later, worker="b", lease=LEASE, limit=10) == []
    due = db.lease_due_feeds(NOW + timedelta(minutes=6), worker="b", lease=LEASE, limit=10)
    assert sorted(f.id for f in due) == ids  # the polled one is due again, the rest expired


def test_a_dead_workers_feeds_are_taken_over_when_its_lease_runs_out(db: Database) -> None:
    ids = add_feeds(db, 2)
    assert len(db.lease_due_feeds(NOW, worker="killed", lease=LEASE, limit=10)) == 2
    assert db.lease_due_feeds(NOW + LEASE / 2, worker="b", lease=LEASE, limit=10) == []
    taken = db.lease_due_feeds(NOW + LEASE, worker="b", lease=LEASE, limit=10)
    assert [f.id for f in taken] == ids


def test_a_feed_given_back_is_due_at_once(db: Database) -> None:
    (fid,) = add_feeds(db, 1)
    db.lease_due_feeds(NOW, worker="a", lease=LEASE, limit=1)
    db.release_feed(fid, "someone else")  # only the holder can give it back
    assert db.lease_due_feeds(NOW, worker="b", lease=LEASE, limit=1) == []
    db.release_feed(fid, "a")
    assert [f.id for f in db.lease_due_feeds(NOW, worker="b", lease=LEASE, limit=1)] == [fid]


def test_concurrent_leases_never_share_a_feed(db: Database) -> None:
    ids = add_feeds(db, 120)
    taken: dict[str, list[int]] = {w: [] for w in ("w1", "w2", "w3", "w4")}
    start = threading.Barrier(4)

    def work(name: str) -> None:
        start.wait()
        while batch := db.lease_due_feeds(NOW, worker=name, lease=LEASE, limit=7):
            taken[name].extend(f.id for f in batch)

    threads = [threading.Thread(target=work, args=(w,)) for w in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [fid for got in taken.values() for fid in got]
    assert sorted(every) == ids  # each feed once, none left


def test_a_named_lease_has_one_holder_until_it_expires_or_is_dropped(db: Database) -> None:
    ttl = timedelta(seconds=15)
    assert db.take_lease("sender", "a", now=NOW, ttl=ttl)
    assert not db.take_lease("sender", "b", now=NOW + timedelta(seconds=5), ttl=ttl)
    assert db.take_lease("sender", "a", now=NOW + timedelta(seconds=10), ttl=ttl)  # renewed
    assert not db.take_lease("sender", "b", now=NOW + timedelta(seconds=20), ttl=ttl)
    assert db.lease_holder("sender", NOW + timedelta(seconds=20)) == "a"
    assert db.take_lease("sender", "b", now=NOW + timedelta(seconds=25), ttl=ttl)  # expired
    db.drop_lease("sender", "a")  # not a's any more: nothing happens
    assert db.lease_holder("sender", NOW + timedelta(seconds=26)) == "b"
    db.drop_lease("sender", "b")
    assert db.lease_holder("sender", NOW + timedelta(seconds=26)) is None
    assert db.take_lease("sender", "a", now=NOW + timedelta(seconds=26), ttl=ttl)


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)  # reaped: no process has this pid now (until reused)
    return proc.pid


def test_a_dead_holder_on_this_host_is_recognised() -> None:
    me = holder_id()
    host = socket.gethostname()
    assert holder_is_dead(f"{host}:{_ended_pid()}:abc123", me)
    assert holder_is_dead(f"{host}:{os.getpid()}:abc123", me)  # same pid, earlier process
    assert not holder_is_dead(me, me)
    assert not holder_is_dead(f"{host}:{os.getppid()}:abc123", me)  # alive
    assert not holder_is_dead(f"elsewhere.test:{_ended_pid()}:abc123", me)  # can't tell


def test_the_sender_lease_of_a_dead_process_is_taken_at_once(db: Database) -> None:
    async def no_sender() -> None:
        return None

    now = datetime.now(UTC)
    seat = SenderSeat(db, holder_id(), no_sender, ttl=60)
    alive = f"{socket.gethostname()}:{os.getppid()}:abc123"
    assert db.take_lease("sender", alive, now=now, ttl=timedelta(seconds=60))
    assert not seat._take()
    assert db.lease_holder("sender", now) == alive
    db.drop_lease("sender", alive)
    dead = f"{socket.gethostname()}:{_ended_pid()}:abc123"
    assert db.take_lease("sender", dead, now=now, ttl=timedelta(seconds=60))
    assert seat._take()
    assert db.lease_holder("sender", datetime.now(UTC)) == seat.holder
