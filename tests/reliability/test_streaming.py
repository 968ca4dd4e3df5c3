"""A poll pass streams feeds through fetch, parse, match and commit with a bounded
number in flight, so memory does not grow with the number of feeds (issue 18).

Feeds are served over HTTP by :class:`FeedServer`; the database is a real file. The
parse executor is a real thread pool of one worker that is slower than the fetches
(each parse waits a little first, or until a count of bodies lets it start): without
the bound, fetched bodies would pile up in front of it. No figure here is a timing:
the counts are of feeds and bodies.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.fetching.client import FeedFetcher, FetchResult
from bot.models import FeedState
from bot.pipeline import PARSED_IN_FLIGHT, STATE_BATCH, Poller
from bot.settings import FetchOptions
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher
from tests.reliability.conftest import Table, make_settings
from tests.support.feed_server import FeedServer, Route, rss_document

FEEDS = 40
LIMIT = 4
GATE_SECONDS = 30


class SlowParses(Executor):
    """One worker thread; every job waits a moment first, so fetching outruns parsing.

    With ``until``, every job waits for that event instead, all of them together at
    most ``GATE_SECONDS`` from the executor's start, so a pipeline that never lets it
    be set fails the test rather than hanging it."""

    def __init__(self, until: threading.Event | None = None) -> None:
        self._until = until
        self._give_up_at = time.monotonic() + GATE_SECONDS
        self._inner = ThreadPoolExecutor(1)
        self._lock = threading.Lock()
        self.queued = 0
        self.peak_queued = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.queued += 1
            self.peak_queued = max(self.peak_queued, self.queued)
        future = self._inner.submit(functools.partial(self._run, fn), *args, **kwargs)
        return future

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            if self._until is None:
                time.sleep(0.02)
            else:
                self._until.wait(max(0.0, self._give_up_at - time.monotonic()))
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.queued -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


class Bodies:
    """Counts feed bodies fetched and not yet committed (or recorded unchanged).

    ``reached`` is set once ``held`` has exceeded ``above``: a test can hold work back
    until then, so a count does not depend on how fast this machine fetches."""

    def __init__(self, above: int | None = None) -> None:
        self._lock = threading.Lock()
        self._above = above
        self.held = 0
        self.peak = 0
        self.reached = threading.Event()

    def got(self) -> None:
        with self._lock:
            self.held += 1
            self.peak = max(self.peak, self.held)
            if self._above is not None and self.held > self._above:
                self.reached.set()

    def dropped(self) -> None:
        with self._lock:
            self.held -= 1


def instrument(
    fetcher: FeedFetcher, db: Database, bodies: Bodies, *also: Bodies,
    started: Bodies | None = None,
) -> None:
    """``bodies`` counts from fetch to commit; ``also`` counters drop at commit too.

    ``started`` counts feeds from the call to fetch, before the fetcher's own limits
    and before any response, to their commit: the feeds the pass has in flight."""
    fetch, commit = fetcher.fetch, db.commit_poll
    if started is not None:
        also = (*also, started)

    async def counted_fetch(url: str, state: FeedState) -> FetchResult:
        if started is not None:
            started.got()
        result = await fetch(url, state)
        if not result.not_modified:
            bodies.got()
        return result

    def counted_commit(*args: Any, **kwargs: Any) -> Any:
        try:
            return commit(*args, **kwargs)
        finally:
            for counter in (bodies, *also):
                counter.dropped()

    fetcher.fetch = counted_fetch  # type: ignore[method-assign]
    db.commit_poll = counted_commit  # type: ignore[method-assign]


def serve(server: FeedServer) -> None:
    for f in range(FEEDS):
        items = [{"guid": f"{f}-{n}", "title": f"Feed {f} story {n} on trade talks",
                  "description": "<p>" + "words of a summary " * 40 + "</p>",
                  "link": f"https://news.example.test/{f}/{n}"} for n in range(30)]
        server.set_route(f"/f{f}.xml", Route(body=rss_document(f"Feed {f}", items)))


async def test_feeds_in_flight_are_bounded_by_the_fetch_concurrency(
    tmp_path: Path, table: Table
) -> None:
    settings = make_settings(
        tmp_path, fetch=FetchOptions(deadline_seconds=30, concurrency=LIMIT, per_host=LIMIT)
    )
    db = Database.open(settings.database_path)
    # Parses wait until the bound is full, so it is reached whatever this machine's
    # speed, and the test shows it is not passed.
    bodies, started = Bodies(above=LIMIT - 1), Bodies()
    parses = SlowParses(until=bodies.reached)
    with FeedServer() as server:
        serve(server)
        for f in range(FEEDS):
            db.add_feed(server.url(f"/f{f}.xml"), now=datetime.now(UTC))
        async with FeedFetcher(settings.file.fetch, True) as fetcher:
            instrument(fetcher, db, bodies, started=started)
            report = await Poller(
                db, fetcher, Matcher(), settings, parse_executor=parses
            ).poll_due()
        parses.shutdown()
        urls = [server.url(f"/f{f}.xml") for f in range(FEEDS)]
    stored = sum(db.item_count(f.id) for f in db.list_feeds())
    db.close()
    assert report.errors == 0 and len(report.feeds) == FEEDS
    assert report.new_items == stored == FEEDS * 30
    assert [r.url for r in report.feeds] == urls
    # Feeds overlap up to the bound, never past it: the pass starts no feed beyond
    # the bound (the fetcher's own limit could hide that from a count of bodies).
    assert started.peak == bodies.peak == LIMIT
    assert 1 <= parses.peak_queued <= LIMIT
    table.row(
        "**Bounded work in flight** (issue 18)", f"{FEEDS} feeds, fetch concurrency "
        f"{LIMIT}, parses held until {LIMIT} bodies wait", FEEDS,
        f"at most {bodies.peak} bodies between fetch and commit and {parses.peak_queued} "
        f"parses queued (bound {LIMIT}); every item stored, reports in due order",
    )


async def test_parsed_feeds_are_bounded_apart_from_fetched_bodies(
    tmp_path: Path, table: Table
) -> None:
    """A parsed feed (items and their readings) weighs several times its body, and the
    bot commits one at a time: of many feeds in flight, at most ``PARSED_IN_FLIGHT``
    are in the parse pool or parsed and not yet committed; the others wait as bodies.

    Parses are held back until more than ``PARSED_IN_FLIGHT`` bodies are held, so the
    bodies' pile-up is the pipeline's doing, not a race between fetch and a sleep (a
    slow CI machine once fetched only 7 in a 20 ms parse's time)."""
    wide = 16
    settings = make_settings(
        tmp_path, fetch=FetchOptions(deadline_seconds=30, concurrency=wide, per_host=wide)
    )
    db = Database.open(settings.database_path)
    bodies, parsed = Bodies(above=PARSED_IN_FLIGHT), Bodies()
    parses = SlowParses(until=bodies.reached)
    submit = parses.submit

    def counted_submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        parsed.got()  # from here until its commit
        return submit(fn, *args, **kwargs)

    parses.submit = counted_submit  # type: ignore[method-assign]
    with FeedServer() as server:
        serve(server)
        for f in range(FEEDS):
            db.add_feed(server.url(f"/f{f}.xml"), now=datetime.now(UTC))
        async with FeedFetcher(settings.file.fetch, True) as fetcher:
            instrument(fetcher, db, bodies, parsed)
            report = await Poller(
                db, fetcher, Matcher(), settings, parse_executor=parses
            ).poll_due()
        parses.shutdown()
    stored = sum(db.item_count(f.id) for f in db.list_feeds())
    db.close()
    assert report.errors == 0 and report.new_items == stored == FEEDS * 30
    assert bodies.reached.is_set(), "parses were held, yet no more than " \
        f"{PARSED_IN_FLIGHT} bodies piled up in front of them"
    assert 2 <= parsed.peak <= PARSED_IN_FLIGHT < bodies.peak <= wide
    table.row(
        "**Parsed feeds bounded apart** (issue 18)", f"{FEEDS} feeds, fetch concurrency "
        f"{wide}, parses held until more than {PARSED_IN_FLIGHT} bodies wait", FEEDS,
        f"at most {parsed.peak} feeds parsing or parsed before their commit (bound "
        f"{PARSED_IN_FLIGHT}) while up to {bodies.peak} bodies were held",
    )


async def test_one_busy_host_does_not_hold_every_slot(tmp_path: Path) -> None:
    """Per-host slots are taken before a feed starts: with a per-host limit of 1,
    feeds of one host run one at a time, and the pass still completes them all."""
    settings = make_settings(
        tmp_path, fetch=FetchOptions(deadline_seconds=30, concurrency=LIMIT, per_host=1)
    )
    db = Database.open(settings.database_path)
    parses = SlowParses()
    with FeedServer() as server:
        serve(server)
        for f in range(12):
            db.add_feed(server.url(f"/f{f}.xml"), now=datetime.now(UTC))
        async with FeedFetcher(settings.file.fetch, True) as fetcher:
            report = await Poller(
                db, fetcher, Matcher(), settings, parse_executor=parses
            ).poll_due()
        parses.shutdown()
        peak = server.peak_concurrency
    db.close()
    assert report.errors == 0 and report.new_items == 12 * 30
    assert peak == 1
    assert parses.peak_queued == 1


async def test_unchanged_feeds_states_are_written_in_batches_and_all_kept(
    tmp_path: Path,
) -> None:
    """A steady pass of 304s writes feed states a batch at a time; every feed's next
    check still moves on, and a second steady pass finds none of them due."""
    settings = make_settings(
        tmp_path, interval=60.0,
        fetch=FetchOptions(deadline_seconds=30, concurrency=LIMIT, per_host=LIMIT),
    )
    db = Database.open(settings.database_path)
    feeds = 2 * STATE_BATCH + 7
    body = rss_document("F", [{"guid": "1", "title": "One", "link": "https://n.test/1"}])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with FeedServer() as server:
        for f in range(feeds):
            server.set_route(f"/f{f}.xml", Route(body=body, etag=f'"e{f}"'))
            db.add_feed(server.url(f"/f{f}.xml"), now=start)
        async with FeedFetcher(settings.file.fetch, True) as fetcher:
            with ThreadPoolExecutor(1) as pool:
                poller = Poller(db, fetcher, Matcher(), settings, parse_executor=pool)
                first = await poller.poll_due(start)
                steady_at = start + timedelta(seconds=61)
                steady = await poller.poll_due(steady_at)
                again = await poller.poll_due(steady_at + timedelta(seconds=1))
        not_modified = sum(1 for r in server.requests if r.headers.get("if-none-match"))
    states = [f.state for f in db.list_feeds()]
    db.close()
    assert first.new_items == feeds and first.errors == 0
    assert len(steady.feeds) == feeds and all(r.unchanged for r in steady.feeds)
    assert not_modified == feeds
    assert all(s.next_check == steady_at + timedelta(seconds=60) for s in states)
    assert again.feeds == ()
