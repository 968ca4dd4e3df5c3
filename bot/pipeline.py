"""One poll pass: fetch due feeds, parse, keep the new items, match, store.

The orchestrator in the middle of the architecture. It owns no policy of its
own: HTTP state comes from ``fetching.conditional``, parsing from
``parsing.feeds``, relevance from the matcher, near-duplicate collapse from
``storylines.dedupe``, and the one write transaction from the repository.
One feed's failure is recorded on that feed and never stops the pass.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.errors import FetchError, ParseError, StorageError
from bot.fetching.client import FeedFetcher
from bot.fetching.conditional import (
    next_state_after_error,
    next_state_after_internal_error,
    next_state_after_success,
)
from bot.health import INTERNAL_LAST_POLL_KEY, INTERNAL_TOTAL_KEY, LAST_POLL_KEY
from bot.models import Feed, Item, Match, Storyline
from bot.parsing.feeds import ParsedFeed, parse_feed
from bot.settings import Settings
from bot.storage.ports import PollerStore
from bot.storage.repository import MatchToStore, RecentMatch
from bot.storylines.dedupe import DEFAULT_DEDUPE, DedupeConfig, Report, find_duplicates
from bot.storylines.matcher import Matcher

log = logging.getLogger(__name__)

# How far back an alert can absorb a later report of the same development.
COLLAPSE_WINDOW = timedelta(hours=36)

# How early a feed may be polled to absorb scheduler jitter (see poll_due).
MAX_DUE_SLACK_SECONDS = 1.0



def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 new item``, ``2 new items``."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


@dataclass(frozen=True, slots=True)
class FeedReport:
    """What one feed's poll did; ``error`` is set when it failed."""

    feed_id: int
    url: str
    title: str | None
    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    unchanged: bool = False
    primed_now: bool = False
    error: str | None = None
    error_kind: str | None = None
    matched_storylines: tuple[int, ...] = ()
    capped: int = 0  # items the feed listed past the per-poll cap

    def describe(self) -> str:
        name = self.title or self.url
        if self.error is not None:
            return f"[{self.feed_id}] {name}: error: {self.error}"
        if self.unchanged:
            return f"[{self.feed_id}] {name}: unchanged"
        first = " (first poll: stored, not alerted)" if self.primed_now else ""
        if self.capped:
            first += f" ({self.capped:,} older items past the cap ignored)"
        return (
            f"[{self.feed_id}] {name}: {count(self.new_items, 'new item')}, "
            f"{count(self.matches, 'match', 'matches')}, {count(self.alerts, 'alert')}{first}"
        )


@dataclass(frozen=True, slots=True)
class PassReport:
    """What a whole pass did."""

    feeds: tuple[FeedReport, ...]

    @property
    def new_items(self) -> int:
        return sum(f.new_items for f in self.feeds)

    @property
    def matches(self) -> int:
        return sum(f.matches for f in self.feeds)

    @property
    def alerts(self) -> int:
        return sum(f.alerts for f in self.feeds)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.feeds if f.error is not None)

    @property
    def internal_errors(self) -> int:
        return sum(1 for f in self.feeds if f.error_kind == "internal")

    def describe(self) -> str:
        return (
            f"total: {count(len(self.feeds), 'feed')} polled, {self.errors} failed, "
            f"{count(self.new_items, 'new item')}, {count(self.matches, 'match', 'matches')}, "
            f"{count(self.alerts, 'alert')} queued"
        )


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A feed fetched once to check it, before it is added."""

    url: str
    title: str | None
    item_count: int


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def collapse(
    matches: Sequence[Match], items: dict[str, Item], recent: Sequence[RecentMatch],
    config: DedupeConfig = DEFAULT_DEDUPE,
) -> list[MatchToStore]:
    """Pair each match with the earlier alerted item it repeats, if any.

    ``recent`` is oldest first. Matches of this batch also count as "earlier"
    for later ones, so two outlets in one feed body make one alert. CPU-bound:
    async callers use :func:`collapse_matches`.
    """
    earlier: dict[int, list[Item]] = {}
    for r in recent:
        earlier.setdefault(r.storyline_id, []).append(r.item)
    fresh: dict[int, list[Match]] = {}
    for m in matches:
        fresh.setdefault(m.storyline_id, []).append(m)
    original: dict[int, Item] = {}  # id() of a match -> the item it repeats
    for storyline_id, ms in fresh.items():
        old = earlier.get(storyline_id, [])
        new = [items[m.item_key] for m in ms]
        found = find_duplicates([Report.of(i) for i in new], [Report.of(i) for i in old], config)
        pool = [*old, *new]
        for m, position in zip(ms, found.duplicate_of, strict=True):
            if position is not None:
                original[id(m)] = pool[position]
    return [
        MatchToStore(m) if id(m) not in original
        else MatchToStore(m, duplicate_of_key=(original[id(m)].feed_id, original[id(m)].key))
        for m in matches
    ]


async def collapse_matches(
    db: PollerStore, matches: Sequence[Match], items: dict[str, Item], now: datetime
) -> list[MatchToStore]:
    """:func:`collapse` against the alerts of the window, both off the event loop.

    A poll of hundreds of matching items against a busy window costs a few
    hundred ms of CPU (bench/bench_collapse.py); in a worker thread it never
    delays commands or other feeds.
    """
    ids = sorted({m.storyline_id for m in matches})
    recent = await asyncio.to_thread(
        db.recent_matches, ids, now - COLLAPSE_WINDOW, per_storyline=DEFAULT_DEDUPE.max_recent
    )
    return await asyncio.to_thread(collapse, matches, items, recent)


class Poller:
    """Runs poll passes; one per process, shared by the CLI and the bot."""

    def __init__(
        self,
        db: PollerStore,
        fetcher: FeedFetcher,
        matcher: Matcher,
        settings: Settings,
        *,
        parse_executor: Executor | None = None,
        executor_factory: Callable[[], Executor] | None = None,
    ) -> None:
        self._db = db
        self._fetcher = fetcher
        self._matcher = matcher
        # The matcher keeps state (term statistics, learned terms, rhythms) and is
        # not thread-safe; it runs in a worker thread so a slow batch (the semantic
        # extra embeds items) never stalls the event loop, one batch at a time.
        self._matcher_lock = asyncio.Lock()
        self._settings = settings
        self._executor = parse_executor
        # A parse worker killed from outside (OOM killer, segfault) breaks the
        # whole pool for good; the factory builds a new one (see _parse).
        self._executor_factory = executor_factory
        self._interval = settings.env.poll_interval
        self._max_backoff = settings.file.fetch.max_backoff_seconds
        self._item_cap = settings.file.limits.items_per_feed_poll

    @property
    def parse_executor(self) -> Executor | None:
        """The pool in use now (a new one after a rebuild)."""
        return self._executor

    async def _parse(self, body: bytes, headers: dict[str, str], url: str) -> ParsedFeed:
        loop = asyncio.get_running_loop()
        executor = self._executor
        parse = functools.partial(parse_feed, max_items=self._item_cap)
        try:
            return await loop.run_in_executor(executor, parse, body, headers, url)
        except BrokenProcessPool:
            if self._executor_factory is None:
                raise
        # Several feeds see the same broken pool; the first one here rebuilds it.
        if self._executor is executor:
            log.error("a parse worker died (killed or crashed); rebuilding the parse pool")
            self._executor = self._executor_factory()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        return await loop.run_in_executor(self._executor, parse, body, headers, url)

    async def poll_due(self, now: datetime | None = None) -> PassReport:
        """Poll every feed whose next check has come, concurrently."""
        now = now or datetime.now(UTC)
        # Passes run every interval and a feed's next check is set to its pass's
        # start plus the interval; a scheduler firing a few ms early would then
        # find it not yet due and leave it a whole extra interval.
        slack = timedelta(seconds=min(MAX_DUE_SLACK_SECONDS, self._interval / 10))
        feeds = await asyncio.to_thread(self._db.due_feeds, now + slack)
        storylines = await asyncio.to_thread(self._db.active_storylines)
        results = await asyncio.gather(
            *(self.poll_feed(f, storylines, now) for f in feeds), return_exceptions=True
        )
        for r in results:
            # A storage fault stops the pass with its own clear message; every
            # other feed failure is already on its FeedReport.
            if isinstance(r, BaseException):
                raise r
        report = PassReport(tuple(r for r in results if isinstance(r, FeedReport)))
        if report.new_items:
            async with self._matcher_lock:
                await asyncio.to_thread(self._save_matcher_state)
        await asyncio.to_thread(self._record_pass, report, now)
        return report

    async def poll_leased(
        self, worker: str, *, lease: timedelta, batch: int = 50,
        stopping: Callable[[], bool] = lambda: False,
    ) -> PassReport:
        """Poll the due feeds this worker can lease, ``batch`` at a time, until none
        is left (``storywatch worker``; other workers lease the others).

        A feed's lease ends when its outcome is written; a worker that dies
        mid-batch leaves its leases to run out, and another worker polls those
        feeds then. ``stopping`` ends the pass between batches.
        """
        slack = timedelta(seconds=min(MAX_DUE_SLACK_SECONDS, self._interval / 10))
        storylines = await asyncio.to_thread(self._db.active_storylines)
        reports: list[FeedReport] = []
        started = datetime.now(UTC)
        while not stopping():
            now = datetime.now(UTC)
            feeds = await asyncio.to_thread(
                functools.partial(
                    self._db.lease_due_feeds, now + slack, worker=worker, lease=lease,
                    limit=batch,
                )
            )
            if not feeds:
                break
            results = await asyncio.gather(
                *(self.poll_feed(f, storylines, now) for f in feeds), return_exceptions=True
            )
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            reports.extend(r for r in results if isinstance(r, FeedReport))
        report = PassReport(tuple(reports))
        if report.new_items:
            async with self._matcher_lock:
                await asyncio.to_thread(self._save_matcher_state)
        await asyncio.to_thread(self._record_pass, report, started)
        return report

    def _record_pass(self, report: PassReport, now: datetime) -> None:
        internal = report.internal_errors
        self._db.set_meta(INTERNAL_LAST_POLL_KEY, str(internal))
        if internal:
            total = int(self._db.get_meta(INTERNAL_TOTAL_KEY) or 0) + internal
            self._db.set_meta(INTERNAL_TOTAL_KEY, str(total))
        self._db.set_meta(LAST_POLL_KEY, now.isoformat())

    def _save_matcher_state(self) -> None:
        # What the matcher learned survives a restart (bootstrap.restore_matcher).
        self._db.save_matcher_state(self._matcher.export_state())

    async def poll_feed(
        self, feed: Feed, storylines: Sequence[Storyline], now: datetime
    ) -> FeedReport:
        """Poll one feed; every failure ends up on the feed's record, not raised."""
        report = FeedReport(feed.id, feed.url, feed.title)
        try:
            return await self._poll_feed(feed, storylines, now, report)
        except StorageError:
            raise
        except (FetchError, ParseError) as exc:
            state = next_state_after_error(
                feed.state, exc, now=now, interval=self._interval, max_backoff=self._max_backoff
            )
            await asyncio.to_thread(self._db.record_feed_state, feed.id, state, now=now)
            return replace(report, error=str(exc), error_kind=exc.kind)
        except Exception as exc:  # one feed's bug must not stop the pass
            log.exception("unexpected error polling feed %s", feed.id)
            message = f"internal error ({type(exc).__name__})"
            # Our bug, not the feed's: counted apart and retried next interval,
            # never backed off for hours as if the feed were bad.
            state = next_state_after_internal_error(
                feed.state, message, now=now, interval=self._interval
            )
            await asyncio.to_thread(self._db.record_feed_state, feed.id, state, now=now)
            return replace(report, error=message, error_kind="internal")

    async def _poll_feed(
        self, feed: Feed, storylines: Sequence[Storyline], now: datetime, report: FeedReport
    ) -> FeedReport:
        result = await self._fetcher.fetch(feed.url, feed.state)
        digest = None if result.not_modified else body_digest(result.body)
        if result.not_modified or digest == feed.state.body_hash:
            state = next_state_after_success(
                feed.state, etag=result.etag or feed.state.etag,
                last_modified=result.last_modified or feed.state.last_modified,
                body_hash=feed.state.body_hash, now=now, interval=self._interval,
            )
            await asyncio.to_thread(self._db.record_feed_state, feed.id, state, now=now)
            return replace(report, unchanged=True)
        parsed = await self._parse(result.body, result.headers, result.final_url)
        if parsed.skipped:
            log.warning("feed %s listed %d more items than the cap of %d; took the newest",
                        feed.id, parsed.skipped, self._item_cap)
        items = {i.key: replace(i, feed_id=feed.id) for i in parsed.items}
        known = await asyncio.to_thread(self._db.known_item_keys, feed.id, list(items.values()))
        new = [i for k, i in items.items() if k not in known]
        to_store: list[MatchToStore] = []
        if feed.primed and new:
            async with self._matcher_lock:
                found = await asyncio.to_thread(self._matcher.match, new, storylines)
            if found:
                to_store = await collapse_matches(self._db, found, items, now)
        elif new:
            async with self._matcher_lock:
                await asyncio.to_thread(self._matcher.observe, new)
        state = next_state_after_success(
            feed.state, etag=result.etag, last_modified=result.last_modified, body_hash=digest,
            now=now, interval=self._interval,
        )
        commit = await asyncio.to_thread(
            self._db.commit_poll, feed.id, state, now=now, title=parsed.title,
            items=list(items.values()), matches=to_store, capped=parsed.skipped,
            hourly_limit=self._settings.file.limits.alerts_per_storyline_hour,
        )
        return replace(
            report, title=parsed.title or feed.title, new_items=commit.new_items,
            matches=commit.matches, alerts=commit.alerts, primed_now=not feed.primed,
            matched_storylines=tuple(m.match.storyline_id for m in to_store),
            capped=parsed.skipped,
        )

    async def probe(self, url: str) -> ProbeResult:
        """Fetch and parse ``url`` once; raises FetchError or ParseError with a
        message fit for the user who asked."""
        from bot.models import FeedState

        result = await self._fetcher.fetch(url, FeedState())
        parsed = await self._parse(result.body, result.headers, result.final_url)
        return ProbeResult(url=url, title=parsed.title, item_count=len(parsed.items))

    async def add_feed(
        self, url: str, *, added_by: int | None = None, title: str | None = None
    ) -> tuple[Feed, ProbeResult]:
        """Probe ``url`` and, if it is a readable feed, start watching it.

        ``title`` (a name from an imported list) is kept: polls do not replace it with
        the feed's own title. Raises DuplicateError (already watched), FetchError or
        ParseError.
        """
        from bot.storage.repository import DuplicateError

        existing = await asyncio.to_thread(self._db.find_feed, url)
        if existing is not None:
            raise DuplicateError(f"feed {url} is already watched (id {existing.id})")
        probe = await self.probe(url)
        feed = await asyncio.to_thread(
            self._db.add_feed, url, now=datetime.now(UTC), title=title or probe.title,
            added_by=added_by, keep_title=title is not None,
        )
        return feed, probe
