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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bot.errors import FetchError, ParseError, StorageError
from bot.fetching.client import FeedFetcher, FetchResult
from bot.fetching.conditional import (
    next_state_after_error,
    next_state_after_internal_error,
    next_state_after_success,
)
from bot.health import INTERNAL_LAST_POLL_KEY, INTERNAL_TOTAL_KEY, LAST_POLL_KEY
from bot.models import Feed, FeedState, Item, Match, Storyline
from bot.parse_worker import parse_and_read
from bot.parsing.feeds import ParsedFeed, parse_feed
from bot.settings import Settings
from bot.storage.ports import PollerStore
from bot.storage.repository import MatchToStore, RecentMatch
from bot.storylines.dedupe import DEFAULT_DEDUPE, DedupeConfig, Report, find_duplicates
from bot.storylines.feedback import SENSITIVITIES, Example, Steering
from bot.storylines.matcher import Matcher
from bot.storylines.state_merge import merge_states

log = logging.getLogger(__name__)

# How far back an alert can absorb a later report of the same development.
COLLAPSE_WINDOW = timedelta(hours=36)

# How early a feed may be polled to absorb scheduler jitter (see poll_due).
MAX_DUE_SLACK_SECONDS = 1.0

# States of unchanged feeds (304, same body) written per transaction.
STATE_BATCH = 100
# Feeds past their fetch, in the parse pool or being matched and committed. A
# parsed feed (items, readings) weighs several times its body, and the bot matches
# and commits one at a time, so they are bounded apart from the bodies in flight
# (issue 18). With 4, the parse worker still waited while the bot committed a run of
# large feeds; 8 kept it busier (first passes 2-4% shorter in each of five alternating
# pairs, the tree's peak the same; docs/performance.md, section 8).
PARSED_IN_FLIGHT = 8



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


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""  # the fetcher refuses it with a message on the feed


def load_steering(db: PollerStore) -> Steering:
    """Every active storyline's feedback and sensitivity, as stored."""
    examples = [
        Example(int(r["storyline_id"]), str(r["verdict"]), f"{r['title']} {r['summary']}",
                int(r["chat_id"]) if r["scope"] == "chat" else None,
                None if r["score"] is None else float(r["score"]))
        for r in db.feedback_rows()
    ]
    thresholds = {sid: bar for sid, name in db.sensitivities().items()
                  if (bar := SENSITIVITIES.get(name)) is not None}
    return Steering(examples, thresholds)


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


_UNDATED = datetime.max.replace(tzinfo=UTC)


def _time_order(item: Item) -> datetime:
    """An item's place in time; undated items after the dated ones, in feed order."""
    return item.published or _UNDATED


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
        # What it knew when it came (restored or warmed up): its increments are
        # counted from here (see _save_matcher_state).
        self._saved_state: dict[str, Any] | None = matcher.export_state()
        self._settings = settings
        self._executor = parse_executor
        # A parse worker killed from outside (OOM killer, segfault) breaks the
        # whole pool for good; the factory builds a new one (see _parse).
        self._executor_factory = executor_factory
        self._interval = settings.env.poll_interval
        self._max_backoff = settings.file.fetch.max_backoff_seconds
        self._item_cap = settings.file.limits.items_per_feed_poll
        self._unchanged: list[tuple[int, FeedState, datetime]] = []
        self._parse_slots = asyncio.Semaphore(PARSED_IN_FLIGHT)
        self._steering: Steering | None = None  # users' feedback, read each pass
        # Called when a feed's commit has queued alerts (the sender, if it runs in
        # this process): they leave at once, not when the whole pass is done.
        self.on_alerts: Callable[[], None] | None = None

    @property
    def parse_executor(self) -> Executor | None:
        """The pool in use now (a new one after a rebuild)."""
        return self._executor

    async def _parse(
        self, body: bytes, headers: dict[str, str], url: str, *, read: bool = True
    ) -> ParsedFeed:
        """Parse in the pool; with ``read``, the items come read for the matcher."""
        loop = asyncio.get_running_loop()
        executor = self._executor
        parse = functools.partial(parse_and_read if read else parse_feed,
                                  max_items=self._item_cap)
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
        """Poll every feed whose next check has come, a bounded number at a time.

        Each feed goes through fetch, parse, match and commit, and its body and
        items are dropped before another feed starts in its place: at most
        ``fetch.concurrency`` feeds are in flight, so memory does not grow with the
        number of feeds (one ``gather`` over every due feed let fetched bodies pile
        up in front of the parse pool: 697 MB at 5,000 feeds, issue 18).
        """
        now = now or datetime.now(UTC)
        # Passes run every interval and a feed's next check is set to its pass's
        # start plus the interval; a scheduler firing a few ms early would then
        # find it not yet due and leave it a whole extra interval.
        slack = timedelta(seconds=min(MAX_DUE_SLACK_SECONDS, self._interval / 10))
        feeds = await asyncio.to_thread(self._db.due_feeds, now + slack)
        storylines = await self._begin_pass()
        try:
            reports = await self._stream(feeds, storylines, now)
        finally:
            await self._flush_unchanged()
        return await self._end_pass(reports, now)

    async def _begin_pass(self) -> Sequence[Storyline]:
        """The storylines of a pass, with users' feedback installed on the matcher."""
        storylines = await asyncio.to_thread(self._db.active_storylines)
        steering = await asyncio.to_thread(load_steering, self._db)
        async with self._matcher_lock:
            self._steer(steering)
        return storylines

    async def _end_pass(self, reports: Sequence[FeedReport], started: datetime) -> PassReport:
        """Save what the matcher learned (if anything was new) and record the pass."""
        report = PassReport(tuple(reports))
        if report.new_items:
            async with self._matcher_lock:
                await asyncio.to_thread(self._save_matcher_state)
        await asyncio.to_thread(self._record_pass, report, started)
        return report

    async def _stream(
        self, feeds: Sequence[Feed], storylines: Sequence[Storyline], now: datetime
    ) -> list[FeedReport]:
        """Poll ``feeds`` with at most ``limit`` in flight, at most ``per_host`` of a host.

        A feed starts only when its host has a free slot, so feeds of one busy host
        never hold every slot while the fetcher's per-host limit makes them wait.
        Hosts take turns, in the order they first appear. A storage fault stops new
        feeds from starting; those in flight finish, then the fault is raised.
        """
        fetch = self._settings.file.fetch
        limit, per_host = max(1, fetch.concurrency), max(1, fetch.per_host)
        waiting: dict[str, deque[tuple[int, Feed]]] = {}
        for position, feed in enumerate(feeds):
            waiting.setdefault(_host_of(feed.url), deque()).append((position, feed))
        busy: dict[str, int] = {}
        running: dict[asyncio.Task[FeedReport], tuple[str, int]] = {}
        reports: dict[int, FeedReport] = {}
        fault: BaseException | None = None
        try:
            while running or (waiting and fault is None):
                started = fault is None
                while started and len(running) < limit:
                    started = False  # one feed per host per round: hosts take turns
                    for host in list(waiting):
                        if len(running) >= limit:
                            break
                        if busy.get(host, 0) >= per_host:
                            continue
                        queue = waiting[host]
                        position, feed = queue.popleft()
                        task = asyncio.create_task(self.poll_feed(feed, storylines, now))
                        running[task] = (host, position)
                        busy[host] = busy.get(host, 0) + 1
                        started = True
                        if not queue:
                            del waiting[host]
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    host, position = running.pop(task)
                    busy[host] -= 1
                    if not busy[host]:
                        del busy[host]
                    exc = task.exception()
                    if exc is not None:
                        # Only a storage fault gets here: every other failure is on
                        # its FeedReport. The first one is raised with its own message.
                        fault = fault or exc
                    else:
                        reports[position] = task.result()
        finally:
            # Cancelled (shutdown): the feeds in flight stop with the pass.
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if fault is not None:
            raise fault
        return [reports[k] for k in sorted(reports)]

    async def _record_unchanged(self, feed_id: int, state: FeedState, now: datetime) -> None:
        """Queue the state of a feed that brought nothing new; written
        ``STATE_BATCH`` at a time in one transaction (see :meth:`_flush_unchanged`).

        A steady pass is mostly 304s, and one transaction and one thread hop per
        feed was a third of its CPU. Losing queued states in a crash costs
        nothing but an early re-poll of those feeds: they stay due."""
        self._unchanged.append((feed_id, state, now))
        if len(self._unchanged) >= STATE_BATCH:
            await self._flush_unchanged()

    async def _flush_unchanged(self) -> None:
        batch, self._unchanged = self._unchanged, []
        if batch:
            await asyncio.to_thread(self._db.record_feed_states, batch)

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
        storylines = await self._begin_pass()
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
            try:
                reports.extend(await self._stream(feeds, storylines, now))
            finally:
                # Unchanged feeds' states are batched (issue 18); writing them ends
                # their leases, so no batch may wait past its own.
                await self._flush_unchanged()
        return await self._end_pass(reports, started)

    def _steer(self, steering: Steering) -> None:
        """Install this pass's feedback and sensitivities on the matcher (a fresh
        read of storage each pass: a press counts from the next poll on)."""
        m = self._matcher
        base = float(getattr(getattr(m, "hybrid", None), "threshold", m.config.threshold))
        self._steering = steering
        steering.install(m, base)

    def _exclusions(
        self, found: Sequence[Match], items: dict[str, Item], storylines: Sequence[Storyline]
    ) -> dict[tuple[str, int], set[int]]:
        """Chats whose own 👎 on a shared storyline rules a match out for them."""
        steering = self._steering
        if steering is None:
            return {}
        m = self._matcher
        base = float(getattr(getattr(m, "hybrid", None), "threshold", m.config.threshold))
        by_id = {s.id: s for s in storylines}
        out: dict[tuple[str, int], set[int]] = {}
        for match in found:
            s = by_id.get(match.storyline_id)
            if s is None or not steering.has_exclusions(s.id):
                continue
            chats = steering.excluded_chats(s, items[match.item_key], match.score, base, m.idf)
            if chats:
                out[(match.item_key, s.id)] = chats
        return out

    def _record_pass(self, report: PassReport, now: datetime) -> None:
        internal = report.internal_errors
        self._db.set_meta(INTERNAL_LAST_POLL_KEY, str(internal))
        if internal:
            total = int(self._db.get_meta(INTERNAL_TOTAL_KEY) or 0) + internal
            self._db.set_meta(INTERNAL_TOTAL_KEY, str(total))
        self._db.set_meta(LAST_POLL_KEY, now.isoformat())

    def _save_matcher_state(self) -> None:
        # What the matcher learned survives a restart (bootstrap.restore_matcher).
        # Other workers save theirs too: add this one's increment since its last
        # save to what is stored, rather than overwrite it (storylines.state_merge).
        mine = self._matcher.export_state()
        base = self._saved_state
        self._db.update_matcher_state(lambda saved: merge_states(saved, base, mine))
        self._saved_state = mine

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
            await self._record_unchanged(feed.id, state, now)
            return replace(report, unchanged=True)
        async with self._parse_slots:
            return await self._take_new(feed, storylines, now, report, result, digest)

    async def _take_new(
        self, feed: Feed, storylines: Sequence[Storyline], now: datetime, report: FeedReport,
        result: FetchResult, digest: str | None,
    ) -> FeedReport:
        """Parse a changed body, match its new items and commit them with the feed."""
        parsed = await self._parse(result.body, result.headers, result.final_url)
        if parsed.skipped:
            log.warning("feed %s listed %d more items than the cap of %d; took the newest",
                        feed.id, parsed.skipped, self._item_cap)
        items = {i.key: replace(i, feed_id=feed.id) for i in parsed.items}
        # A feed's first commit stores its items and primes it in one transaction, so
        # a feed not yet primed holds no items: nothing to look up (a thread hop and
        # two queries per feed saved on a first pass).
        known = await asyncio.to_thread(
            self._db.known_item_keys, feed.id, list(items.values())
        ) if feed.primed else set()
        # Oldest first, as events happened (feeds list the newest first): the matcher
        # reads them in time order, the first report of a development is the one the
        # others collapse into, and the chat gets the one waiting longest first (its
        # 1 message/s limit holds the next back by a second).
        new = sorted((i for k, i in items.items() if k not in known), key=_time_order)
        to_store: list[MatchToStore] = []
        excluded: dict[tuple[str, int], set[int]] = {}
        if feed.primed and new:
            async with self._matcher_lock:
                found = await asyncio.to_thread(self._matcher.match, new, storylines)
                if found:
                    excluded = await asyncio.to_thread(
                        self._exclusions, found, items, storylines)
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
            excluded=excluded,
        )
        if commit.alerts and self.on_alerts is not None:
            self.on_alerts()
        return replace(
            report, title=parsed.title or feed.title, new_items=commit.new_items,
            matches=commit.matches, alerts=commit.alerts, primed_now=not feed.primed,
            matched_storylines=tuple(m.match.storyline_id for m in to_store),
            capped=parsed.skipped,
        )

    async def probe(self, url: str) -> ProbeResult:
        """Fetch and parse ``url`` once; raises FetchError or ParseError with a
        message fit for the user who asked."""
        result = await self._fetcher.fetch(url, FeedState())
        parsed = await self._parse(result.body, result.headers, result.final_url, read=False)
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
