"""Scheduling: a slow or dead feed never delays the others beyond its own
deadline, and the poll job neither overlaps itself nor silently skips runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import POLL_JOB_KWARGS, _serve, build_application
from bot.delivery.ratelimit import SendLimiter
from bot.delivery.replies import Replier
from bot.fetching.client import FeedFetcher
from bot.fetching.guard import StaticResolver
from bot.models import FeedState, Item, Storyline
from bot.pipeline import PassReport, Poller
from bot.settings import FetchOptions, Settings
from bot.storage.repository import Database, MatchToStore, PollCommit
from bot.storylines.matcher import Matcher
from tests.reliability.conftest import Table, make_settings
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Long enough that a loaded machine stores the healthy feeds within it; the slow
# ones (minutes of trickle, a silent socket) still run it out.
DEADLINE = 4.0
HEALTHY = 12


class TimedDatabase(Database):
    """Records when each feed's outcome was written (monotonic seconds)."""

    written: list[tuple[int, float]]

    def commit_poll(self, feed_id: int, state: FeedState, *, now: datetime, title: str | None,
                    items: Sequence[Item], matches: Sequence[MatchToStore],
                    **options: Any) -> PollCommit:
        result = super().commit_poll(feed_id, state, now=now, title=title, items=items,
                                     matches=matches, **options)
        self.written.append((feed_id, time.monotonic()))
        return result

    def record_feed_state(self, feed_id: int, state: FeedState, *, now: datetime) -> None:
        super().record_feed_state(feed_id, state, now=now)
        self.written.append((feed_id, time.monotonic()))


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


async def test_slow_and_dead_feeds_do_not_hold_up_the_others(
    tmp_path: Path, server: FeedServer, table: Table
) -> None:
    options = FetchOptions(deadline_seconds=DEADLINE, connect_timeout_seconds=DEADLINE)
    settings = make_settings(tmp_path, fetch=options)
    base = Database.open(settings.database_path)
    db = TimedDatabase(base._conn, base.path)
    db.written = []
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    names = {"slow.test", "dead.test"} | {f"ok{i}.test" for i in range(HEALTHY)}
    resolver = StaticResolver({n: ["127.0.0.1"] for n in names})
    now = datetime.now(UTC)
    try:
        server.set_route("/slow", Route(body=b"<rss>" * 10_000, chunk_size=8, delay=0.05))
        slow = db.add_feed(server.url("/slow", host="slow.test"), now=now).id
        dead = db.add_feed(f"http://dead.test:{silent.getsockname()[1]}/feed", now=now).id
        healthy = []
        for i in range(HEALTHY):
            body = rss_document(f"OK {i}", [{"guid": f"{i}", "title": f"Story {i}"}])
            server.set_route(f"/ok{i}", Route(body=body))
            healthy.append(db.add_feed(server.url(f"/ok{i}", host=f"ok{i}.test"), now=now).id)
        async with FeedFetcher(options, allow_private_networks=True, resolver=resolver) as f:
            started = time.monotonic()
            report = await Poller(db, f, Matcher(), settings).poll_due(now)
            took = time.monotonic() - started
    finally:
        silent.close()
        base.close()
    errors = {r.feed_id: r.error_kind for r in report.feeds if r.error}
    assert errors == {slow: "deadline", dead: "deadline"}
    at = dict(db.written)
    last_healthy = max(at[h] for h in healthy)
    # Every healthy feed was stored within the slow feeds' own deadline...
    assert last_healthy - started < DEADLINE
    # ...before either slow feed gave up, and the pass ended with their deadline.
    assert last_healthy < min(at[slow], at[dead])
    assert took < DEADLINE + 5.0  # not the trickle's minutes
    table.row(
        "A trickling feed and a silent (never answering) feed in one pass with 12 healthy ones",
        f"Poller.poll_due, fetch deadline {DEADLINE:g} s", HEALTHY + 2,
        f"12 healthy feeds stored before either slow feed gave up and within its deadline; "
        f"both recorded as 'deadline'; pass {took:.1f} s",
    )


# --- the poll job -----------------------------------------------------------------------


class SlowPoller:
    """Stands in for Poller: each pass takes longer than the poll interval."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = 0
        self.peak = 0
        self.passes = 0

    async def poll_due(self, now: datetime | None = None) -> PassReport:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.passes += 1
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.active -= 1
        return PassReport(())


async def test_poll_job_never_overlaps_and_keeps_running(
    tmp_path: Path, table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    token = "123:TEST"
    with FakeTelegram(token) as fake:
        settings = make_settings(tmp_path, interval=1.0)
        settings = settings.model_copy(update={
            "env": settings.env.model_copy(update={"telegram_api_url": fake.api_url})
        })
        db = Database.open(settings.database_path)
        app = build_application(settings, token)
        poller = SlowPoller(2.5)
        stop = asyncio.Event()
        await app.initialize()
        caplog.set_level(logging.WARNING, logger="apscheduler")
        limiter = SendLimiter()
        task = asyncio.create_task(_serve(  # type: ignore[arg-type]
            app, settings, db, poller, stop, limiter, Replier(app.bot, limiter)))
        try:
            for _ in range(200):
                if app.job_queue is not None and app.job_queue.get_jobs_by_name("poll"):
                    break
                await asyncio.sleep(0.05)
            assert app.job_queue is not None
            [job] = app.job_queue.get_jobs_by_name("poll")
            aps: Any = job.job
            assert (aps.max_instances, aps.coalesce, aps.misfire_grace_time) == (1, True, None)
            assert aps.trigger.interval.total_seconds() == 1.0
            assert POLL_JOB_KWARGS == {"max_instances": 1, "coalesce": True,
                                       "misfire_grace_time": None}
            # Three passes of 2.5 s take about 8 s; a loaded machine's lag can push a
            # pass back a whole interval, so the wait is longer than that.
            for _ in range(600):
                if poller.passes >= 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await app.shutdown()
            db.close()
    assert poller.peak == 1
    assert poller.passes >= 3
    skipped = [r for r in caplog.records if "maximum number of running instances" in r.message]
    assert skipped  # a run due while the pass still runs is logged, not silently lost
    table.row(
        "Poll pass (2.5 s) longer than the interval (1 s), real PTB JobQueue/APScheduler",
        "bot.app._serve against the fake Bot API; job options inspected",
        poller.passes,
        f"job max_instances=1, coalesce=True, misfire_grace_time=None; peak concurrency "
        f"{poller.peak}; {poller.passes} passes back to back; overlapping runs logged as "
        "skipped (WARNING), never silent",
    )


def _followed_wire(
    settings: Settings, server: FeedServer
) -> tuple[Database, datetime, list[dict[str, str]]]:
    """A chat following "Wang Yi visit to Moscow" and a wire feed served at /wire
    (not yet added), with one unrelated item."""
    db = Database.open(settings.database_path)
    now = datetime.now(UTC)
    story = db.add_storyline(Storyline(0, "Wang Yi visit to Moscow"), now=now, created_by=7)
    db.upsert_chat(7, now=now)
    db.subscribe(7, story.id, now=now)
    wire = [{"guid": "1", "title": "Markets steady on Monday"}]
    server.set_route("/wire", Route(body=rss_document("Wire", wire)))
    return db, now, wire


async def test_the_sender_is_woken_by_the_commit_that_queues_alerts(
    tmp_path: Path, server: FeedServer
) -> None:
    """Alerts leave when their feed is committed, not when the whole pass is done (the
    app wakes the sender at the end of a pass too, and polls it every second)."""
    settings = make_settings(tmp_path)
    db, now, wire = _followed_wire(settings, server)
    for i in range(3):
        server.set_route(f"/q{i}", Route(body=rss_document(f"Q{i}", [{"guid": "q",
                                                                      "title": "Weather"}])))
        db.add_feed(server.url(f"/q{i}"), now=now)
    db.add_feed(server.url("/wire"), now=now)
    pending_at_wake: list[int] = []
    try:
        async with FeedFetcher(FetchOptions(), allow_private_networks=True) as f:
            poller = Poller(db, f, Matcher(), settings)
            poller.on_alerts = lambda: pending_at_wake.append(db.outbox_counts()["pending"])
            await poller.poll_due(now)  # primes every feed: no alerts for what was there
            assert pending_at_wake == []
            wire.append({"guid": "2", "title": "Wang Yi arrives in Moscow for a visit"})
            server.set_route("/wire", Route(body=rss_document("Wire", wire)))
            report = await poller.poll_due(now + timedelta(seconds=settings.env.poll_interval))
    finally:
        db.close()
    assert report.alerts == 1
    assert pending_at_wake == [1]  # once, with the alert already queued for the sender


async def test_new_items_of_a_feed_are_alerted_oldest_first(
    tmp_path: Path, server: FeedServer
) -> None:
    """A feed lists the newest first; the chat gets the developments as they happened."""
    settings = make_settings(tmp_path)
    db, now, wire = _followed_wire(settings, server)
    db.add_feed(server.url("/wire"), now=now)
    later = [  # newest first, as feeds list them
        {"guid": "3", "title": "Wang Yi meets Lavrov in Moscow",
         "pubDate": format_datetime(now + timedelta(minutes=20), usegmt=True)},
        {"guid": "2", "title": "Wang Yi arrives in Moscow for a visit",
         "pubDate": format_datetime(now + timedelta(minutes=10), usegmt=True)},
    ]
    try:
        async with FeedFetcher(FetchOptions(), allow_private_networks=True) as f:
            poller = Poller(db, f, Matcher(), settings)
            await poller.poll_due(now)
            server.set_route("/wire", Route(body=rss_document("Wire", later + wire)))
            await poller.poll_due(now + timedelta(minutes=30))
        claimed = db.claim_due_alerts(now + timedelta(minutes=30), 10)
    finally:
        db.close()
    assert [e.item.title for e in claimed] == [
        "Wang Yi arrives in Moscow for a visit", "Wang Yi meets Lavrov in Moscow"]
