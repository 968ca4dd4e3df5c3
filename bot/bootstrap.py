"""Start-up wiring shared by the CLI and the bot: open the database, bring it in
line with the config file and the seed storylines, and build the poller.

This is the one place that turns ``Settings`` into live objects; nothing below
it reads the environment or the clock on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import ConfigError
from bot.fetching.client import FeedFetcher
from bot.parse_worker import start_worker, warm_up
from bot.parsing.normalize import canonical_url
from bot.pipeline import Poller
from bot.settings import Settings
from bot.storage.ports import MatcherStateStore, PollerStore
from bot.storage.repository import Database, DuplicateError
from bot.storage.retention import RetentionPolicy
from bot.storylines.matcher import Matcher
from bot.storylines.seedfile import load_seed_dir

log = logging.getLogger(__name__)

# Enough recent items to give the matcher's term statistics a sensible start.
WARM_UP_ITEMS = 5000


def seeds_dir(settings: Settings) -> Path:
    """Where shared seed storylines live: ``seeds_dir`` in the TOML, else ./seeds."""
    configured = settings.file.seeds_dir
    return Path(configured) if configured else Path("seeds")


def normalise_feed_url(url: str) -> str:
    """The form a feed URL is stored in; ConfigError when it is not http(s)."""
    canonical = canonical_url(url.strip())
    if canonical is None:
        raise ConfigError(f"not an http(s) URL: {url!r}")
    return canonical


def open_database(settings: Settings, *, sync: bool = True) -> Database:
    """Open the database; with ``sync``, add the config's feeds and the seed storylines."""
    storage = settings.file.storage
    database_url = settings.env.database_url
    if database_url is not None:
        db = Database.open_postgres(database_url.get_secret_value())
    else:
        db = Database.open(
            settings.database_path, busy_timeout=storage.busy_timeout_seconds,
            lock_attempts=storage.lock_attempts,
        )
    if sync:
        now = datetime.now(UTC)
        for feed in settings.file.feeds:
            url = normalise_feed_url(feed.url)
            if db.find_feed(url) is None:
                # Workers starting together race to add it; one wins, all go on.
                with contextlib.suppress(DuplicateError):
                    db.add_feed(url, now=now, title=feed.title)
        directory = seeds_dir(settings)
        if directory.is_dir():
            for storyline in load_seed_dir(directory):
                db.upsert_shared_storyline(storyline, now=now)
    return db


def retention_policy(settings: Settings) -> RetentionPolicy:
    r = settings.file.retention
    return RetentionPolicy(items_days=r.items_days, alerts_days=r.alerts_days,
                           batch_rows=r.batch_rows)


def parse_executor() -> Executor:
    """A process pool for parsing feeds and reading their items' facts for the matcher
    (``bot.parse_worker``): CPU-bound work that must stay off the loop.

    spawn: the worker is a fresh interpreter, because forking a process that runs
    threads (the event loop's default executor, SQLite) can copy held locks into the
    child. A forkserver would do that too, but it is one more process (~13 MB) kept
    beside the worker for nothing: the pool starts its one worker once, and again
    only after a crash.

    One worker. It sets the pace of a first pass of 1,000 feeds, about 60% of the
    CPU, the bot's own process the rest (docs/performance.md, section 8), so a second
    worker would help wall time; but each worker is ~40 MB more, and the tree's
    budget is 150 MB.

    The worker is started and warmed up (:func:`~bot.parse_worker.warm_up`) now,
    beside the bot's own start, rather than by the first feed that needs it.
    """
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"),
        # A worker outlives a bot killed outright unless it watches for that; and
        # its pipes are widened for whole feeds (parse_worker.widen_pipes).
        initializer=start_worker, initargs=(os.getpid(),),
    )
    pool.submit(warm_up).add_done_callback(_warmed)
    return pool


def _warmed(done: Future[int]) -> None:
    # Not fatal: a worker that cannot parse fails each feed's parse too, and each
    # of those failures is reported on its feed.
    error = None if done.cancelled() else done.exception()
    if error is not None:
        log.warning("the parse worker failed its warm-up: %s", error)


def build_matcher(settings: Settings) -> Matcher:
    """The matcher the poller uses: words alone, or words and meaning with
    ``[matching] semantic = true``.

    The semantic matcher needs the ``semantic`` extra and the weights package;
    without them this raises ConfigError naming the install commands, so the bot
    stops at start rather than running without what it was configured to use.
    """
    if not settings.file.matching.semantic:
        return Matcher()
    from bot.storylines import semantic

    try:
        scorer = semantic.SemanticScorer.load()
    except semantic.SemanticUnavailable as exc:
        raise ConfigError(
            f"[matching] semantic = true, but the semantic matcher is unavailable: {exc}"
        ) from exc
    log.info("semantic matcher on: %s", scorer.encoder)
    return semantic.hybrid_matcher(scorer)


def restore_matcher(db: MatcherStateStore, matcher: Matcher) -> None:
    """Give the matcher what it had learned before (saved after every poll pass), so a
    restart or ``poll --once`` decides as the long-running bot would; without a saved
    state, warm its term statistics up on recent items."""
    state = db.load_matcher_state()
    if state is not None and matcher.restore_state(state):
        log.info("matcher state restored (%d storylines)", len(state.get("storylines", {})))
        return
    matcher.observe(db.recent_items(WARM_UP_ITEMS))


@asynccontextmanager
async def running_poller(settings: Settings, db: PollerStore) -> AsyncIterator[Poller]:
    """A poller with its shared HTTP client and parse pool, closed on exit.

    Loading the model and warming the matcher up on recent items take seconds
    of CPU: they run in a thread so the event loop (signals, commands) stays live.
    """
    # Made first: its worker starts and warms up while the matcher does.
    pool = parse_executor()
    try:
        matcher = await asyncio.to_thread(warm_matcher, settings, db)
        fetcher = FeedFetcher(settings.file.fetch, settings.env.allow_private_networks)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    poller = Poller(
        db, fetcher, matcher, settings, parse_executor=pool, executor_factory=parse_executor,
    )
    try:
        yield poller
    finally:
        await fetcher.aclose()
        if poller.parse_executor is not None:
            poller.parse_executor.shutdown(wait=True, cancel_futures=True)


def warm_matcher(settings: Settings, db: MatcherStateStore) -> Matcher:
    """The configured matcher with what it had learned restored (or its statistics primed
    on recent items: :func:`restore_matcher`)."""
    matcher = build_matcher(settings)
    restore_matcher(db, matcher)
    return matcher
