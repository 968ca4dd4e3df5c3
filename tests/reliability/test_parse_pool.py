"""The parse pool when a worker dies (OOM killer, segfault): rebuilt, and our own
failures counted apart from the feeds' instead of backing feeds off.

A real worker process of the real parse pool (``bootstrap.parse_executor``) is killed
with SIGKILL.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.bootstrap import parse_executor, warm_matcher
from bot.fetching.client import FeedFetcher
from bot.health import check_database
from bot.observability.metrics import Metrics
from bot.parse_worker import PIPE_BYTES, warm_up
from bot.pipeline import Poller
from bot.settings import Settings
from bot.storage.repository import Database
from bot.telegram import commands as c
from bot.telegram.service import Caller, ChatService
from tests.reliability.conftest import Table, make_settings
from tests.support.feed_server import FeedServer, Route, rss_document

FEEDS = 6


def publish(server: FeedServer, generation: int) -> None:
    for f in range(FEEDS):
        server.set_route(f"/f{f}.xml", Route(body=rss_document(f"Feed {f}", [
            {"guid": f"{f}-{generation}-{n}", "title": f"Story {generation}.{n} of feed {f}",
             "link": f"https://n.test/{f}/{generation}/{n}"} for n in range(5)])))


def kill_a_worker(pool: ProcessPoolExecutor) -> int:
    processes = getattr(pool, "_processes", None) or {}
    pid = next(iter(processes))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the pool has noticed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    return int(pid)


def setup(tmp_path: Path, interval: float) -> tuple[Settings, Database, ProcessPoolExecutor]:
    settings = make_settings(tmp_path, interval=interval)
    pool = parse_executor()
    assert isinstance(pool, ProcessPoolExecutor)
    return settings, Database.open(settings.database_path), pool


def world(server: FeedServer, settings: Settings, db: Database, pool: ProcessPoolExecutor,
          *, rebuild: bool) -> Poller:
    """FEEDS feeds with their first items, and a poller on ``pool``."""
    publish(server, 1)
    for f in range(FEEDS):
        db.add_feed(server.url(f"/f{f}.xml"), now=datetime.now(UTC))
    return Poller(
        db, FeedFetcher(settings.file.fetch, True), warm_matcher(settings, db), settings,
        parse_executor=pool, executor_factory=parse_executor if rebuild else None,
    )


async def test_a_killed_worker_is_replaced_and_every_feed_still_parses(
    tmp_path: Path, table: Table
) -> None:
    settings, db, pool = setup(tmp_path, 1.0)
    with FeedServer() as server:
        poller = world(server, settings, db, pool, rebuild=True)
        first = await poller.poll_due()
        assert first.errors == 0
        killed = kill_a_worker(pool)
        publish(server, 2)
        time.sleep(1.1)
        second = await poller.poll_due()
        publish(server, 3)
        time.sleep(1.1)
        third = await poller.poll_due()
        new_pool = poller.parse_executor
        assert new_pool is not None
        new_pool.shutdown(wait=True)
    assert new_pool is not pool
    assert second.errors == 0 and second.new_items == FEEDS * 5
    assert third.errors == 0 and third.new_items == FEEDS * 5
    assert db.get_meta("internal_errors.last_poll") == "0"
    db.close()
    table.row(
        "**Parse worker killed** (SIGKILL to a real pool process)", f"{FEEDS} feeds, "
        "a pass, the kill, two more passes with new items", FEEDS * 2,
        f"pool rebuilt once (worker pid {killed} gone); every feed parsed in both later "
        "passes, 0 errors, 0 internal errors",
    )


async def test_internal_errors_are_counted_apart_and_do_not_back_feeds_off(
    tmp_path: Path, table: Table
) -> None:
    """Without a way to rebuild the pool, every parse is our failure: an internal
    error, shown in health and metrics, and the feed is retried next interval."""
    settings, db, pool = setup(tmp_path, 60.0)
    with FeedServer() as server:
        poller = world(server, settings, db, pool, rebuild=False)
        pool.submit(os.getpid).result()  # the workers exist
        kill_a_worker(pool)
        now = datetime.now(UTC)
        report = await poller.poll_due(now)
        pool.shutdown(wait=True)
        status = (await ChatService(db, poller, settings).handle(
            c.parse(c.split_command("/status")),
            Caller(chat_id=1, user_id=1))).text
    metrics = Metrics()
    metrics.record_pass(report, 1.0)
    feeds = db.list_feeds()
    health = check_database(settings.database_path, 60.0, now)
    db.close()
    assert report.internal_errors == FEEDS
    assert all(f.state.consecutive_errors == 0 for f in feeds)  # no backoff
    assert all(f.state.next_check is not None
               and (f.state.next_check - now).total_seconds() == 60.0 for f in feeds)
    assert all("internal error" in (f.state.last_error or "") for f in feeds)
    assert metrics.registry.get_sample_value("storywatch_internal_errors_total") == FEEDS
    assert f"Internal errors (bot bugs, not the feeds): {FEEDS} in the last poll" in status
    assert not health.ok
    assert any("internal error in the last poll pass" in r for r in health.reasons)
    table.row(
        "Internal errors (our bug: a broken pool that cannot be rebuilt)", f"{FEEDS} feeds "
        "polled", FEEDS,
        f"{FEEDS} internal errors counted apart (meta, `/status`, health unhealthy "
        "\"… internal error in the last poll pass\", `storywatch_internal_errors_total`); "
        "every feed retried after one interval, consecutive_errors 0 (no backoff)",
    )


def _gazetteer_built() -> bool:
    # Built on a worker's first read of an item, never by importing.
    from bot.storylines.facets import gazetteer

    return gazetteer.cache_info().currsize == 1


def test_the_parse_pool_starts_its_worker_warmed_up_before_the_first_feed() -> None:
    # Spawning the worker and its first parse (imports, word lists) took about 0.4 s
    # of the first pass's first feed; the pool now does both when it is made.
    before = {p.pid for p in multiprocessing.active_children()}
    pool = parse_executor()
    try:
        started = [p for p in multiprocessing.active_children() if p.pid not in before]
        assert len(started) == 1, "the worker starts with the pool, not at the first feed"
        # One worker runs its jobs in order: this one comes after the warm-up.
        assert pool.submit(_gazetteer_built).result(timeout=60) is True
    finally:
        pool.shutdown(wait=True)


def test_the_warm_up_parses_and_reads_its_feed() -> None:
    assert warm_up() == 1


def _queue_pipe_sizes(pool: ProcessPoolExecutor) -> list[int]:
    # The pool's own queues, read from the bot's side: the pipes the worker widened.
    queues = (pool._call_queue, pool._result_queue)
    return [fcntl.fcntl(q._reader.fileno(), fcntl.F_GETPIPE_SZ) for q in queues]


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are set on Linux only")
def test_the_parse_pools_queues_are_wide_enough_for_a_whole_feed() -> None:
    # At the default 64 KB a feed crossed in chunks, each waiting for the bot's GIL.
    want = min(PIPE_BYTES, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
    pool = parse_executor()
    try:
        assert pool.submit(warm_up).result(timeout=60) == 1  # the worker has started
        sizes = _queue_pipe_sizes(pool)
    finally:
        pool.shutdown(wait=True)
    assert min(sizes) >= want, sizes
