"""Replay a labelled benchmark through the real bot, as its users live it; score each chat.

One harness for the end-to-end test (``tests/e2e/test_replay.py``, which asserts per-chat
floors) and the bench (``bench/bench_replay.py``, which prints the table).

- The benchmark's items (``../shared/benchmarks/FORMAT.md``) are served as ``outlets`` RSS
  feeds by a :class:`FeedServer` on 127.0.0.1, assigned round-robin in time order. Each
  item keeps its ``published`` date as ``pubDate``, so the matcher sees 2023's dates.
- The first ``primers_per_outlet`` items of each feed (so the file's first items, before
  everything else) are in the feeds from the start: the bot's first poll of a feed stores
  them without alerting. Only what follows counts.
- The real ``storywatch run`` (:class:`BotProcess`) polls every second and talks to the
  :class:`FakeTelegram` Bot API. Before the stream starts, one private chat per followed
  storyline sends ``/track TITLE``: the two storylines that share one seed article do it
  as a reply to a message carrying that article, two title-only ones by title alone.
- A simulated clock then runs through the benchmark's time span in ``steps`` equal
  steps: each feed grows with every item whose ``published`` time the clock has passed.
  The clock moves on once the bot has fetched every feed since the last step (one poll
  pass, a second apart), so each fetch brings the same items however loaded the machine
  is; a step that brings nothing new does not wait. Outlet B answers ``stagger`` seconds
  after A, and C after B, so that a pass's feeds reach the matcher in the same order
  every time (the matcher's figures depend on the order it sees items in).
- When every item is stored and the outbox is empty, every alert a chat received
  (``sendMessage`` starting with 📰) is mapped back to its item by its link, and scored
  against the gold labels: an item is on-story for a chat if the chat's storyline id is
  among its ``storylines``.
"""

from __future__ import annotations

import html
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import table
from tests.e2e.conftest import REPO, BotProcess, Chat, wait_until, write_config
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document

BENCHMARKS = REPO.parent / "shared" / "benchmarks"
VISITS = BENCHMARKS / "visits-2023.json"
FIRST_CHAT = 7001
_LINK = re.compile(r'<a href="([^"]*)">')


@dataclass(frozen=True, slots=True)
class Follower:
    """One user: a private chat that tracks one benchmark storyline."""

    chat_id: int
    storyline: str  # the benchmark's storyline id
    title: str
    seed: str | None = None  # the message the /track replies to, if any

    @property
    def how(self) -> str:
        return "reply to seed article" if self.seed else "title"


@dataclass(frozen=True, slots=True)
class ChatFigures:
    """What one chat received, against the gold labels."""

    follower: Follower
    alerts: int  # alert messages received
    on_story: int  # of those, about an item labelled with the chat's storyline
    found: int  # distinct on-story items alerted
    gold: int  # streamed items labelled with the chat's storyline
    unmapped: int  # alerts whose link is no streamed item

    @property
    def precision(self) -> float:
        return self.on_story / self.alerts if self.alerts else math.nan

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else math.nan


@dataclass(frozen=True, slots=True)
class ReplayResult:
    bench: str
    chats: tuple[ChatFigures, ...]
    streamed: int
    steps: int
    stream_seconds: float  # wall time from the first step to the last
    wall_seconds: float  # the whole replay, start-up and last sends included
    exit_code: int

    def describe(self) -> str:
        return (f"{self.bench}: {self.streamed} items streamed in {self.steps} steps "
                f"({self.stream_seconds:.0f} s); whole replay {self.wall_seconds:.0f} s; "
                f"bot exit code {self.exit_code}")

    def table(self) -> str:
        def fig(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{x:.2f}"

        rows = [
            [f.follower.chat_id, f"{f.follower.storyline} {f.follower.title}", f.follower.how,
             f.alerts, f.on_story, f.gold, fig(f.precision), fig(f.recall), f.unmapped]
            for f in self.chats
        ]
        return table(["chat", "storyline", "tracked by", "alerts", "on-story", "gold",
                      "precision", "recall", "unmapped"], rows)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def followers(bench: dict[str, Any]) -> list[Follower]:
    """The four users: the two storylines that share one seed article track it by
    replying ``/track TITLE`` to that article; the first two storylines with no seed
    document track by ``/track TITLE`` alone."""
    by_article: dict[str, list[dict[str, Any]]] = {}
    for s in bench["storylines"]:
        for doc in s.get("seed_documents", []):
            by_article.setdefault(f"{doc['title']}\n\n{doc['text']}", []).append(s)
    shared = [(text, group) for text, group in by_article.items() if len(group) == 2]
    if not shared:
        raise ValueError(f"{bench['name']}: no seed article shared by two storylines")
    article, pair = shared[0]
    plain = [s for s in bench["storylines"] if not s.get("seed_documents")][:2]
    chosen = [(s, article) for s in pair] + [(s, None) for s in plain]
    return [Follower(FIRST_CHAT + n, s["id"], s["title"], seed)
            for n, (s, seed) in enumerate(chosen)]


class Outlets:
    """The benchmark's items as ``count`` feeds that grow as the simulated clock runs."""

    def __init__(
        self, server: FeedServer, items: list[dict[str, Any]], count: int, stagger: float
    ) -> None:
        self.server = server
        self.stagger = stagger
        self.feeds = [(f"/outlet-{n + 1}.xml", f"Outlet {chr(ord('A') + n)}", items[n::count])
                      for n in range(count)]
        self.shown = [-1] * count  # none served yet

    @property
    def urls(self) -> list[str]:
        return [self.server.url(path) for path, _, _ in self.feeds]

    def show(self, until: datetime | None = None, first: int = 0) -> list[str]:
        """Serve every item published up to ``until`` (and at least the first
        ``first`` of each feed), newest first as feeds do; returns the paths that grew."""
        grew = []
        for n, (path, title, items) in enumerate(self.feeds):
            shown = max(first, self.shown[n])
            while until is not None and shown < len(items) and _when(items[shown]) <= until:
                shown += 1
            if shown != self.shown[n]:
                self.shown[n] = shown
                body = rss_document(title, [_rss(i) for i in reversed(items[:shown])])
                self.server.set_route(path, Route(body=body, delay=self.stagger * n))
                grew.append(path)
        return grew

    def fetched_since(self, counts: dict[str, int], give_up: Callable[[], bool]) -> bool:
        """Has every feed been requested again since ``counts`` (path -> requests) was
        taken? True as well once ``give_up()`` is (the caller looks why)."""
        return give_up() or all(len(self.server.requests_for(p)) > n for p, n in counts.items())

    def request_counts(self) -> dict[str, int]:
        return {path: len(self.server.requests_for(path)) for path, _, _ in self.feeds}


def _when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["published"].replace("Z", "+00:00"))


def _rss(item: dict[str, Any]) -> dict[str, str]:
    return {"guid": item["id"], "title": item["title"], "link": item["link"],
            "description": item["summary"], "pubDate": format_datetime(_when(item), usegmt=True)}


def _outbox_settled(db: Path, items: int) -> bool:
    """Every item stored and nothing left to send (read-only look at the bot's database)."""
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            stored = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            waiting = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')"
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # busy or mid-checkpoint: ask again
        return False
    return bool(stored >= items and waiting == 0)


def score(streamed: list[dict[str, Any]], users: list[Follower],
          fake: FakeTelegram) -> tuple[ChatFigures, ...]:
    """Each chat's alerts, mapped to streamed items by link, against the gold labels."""
    by_link = {i["link"]: i for i in streamed}
    out = []
    for user in users:
        alerts = [m.current for m in fake.messages(user.chat_id) if m.text.startswith("📰")]
        on_story = unmapped = 0
        found: set[str] = set()
        for text in alerts:
            link = _LINK.search(text)
            item = by_link.get(html.unescape(link.group(1))) if link else None
            if item is None:
                unmapped += 1
            elif user.storyline in item["storylines"]:
                on_story += 1
                found.add(item["id"])
        gold = sum(1 for i in streamed if user.storyline in i["storylines"])
        out.append(ChatFigures(user, len(alerts), on_story, len(found), gold, unmapped))
    return tuple(out)


def replay(
    bench_path: Path,
    workdir: Path,
    fake: FakeTelegram,
    *,
    steps: int = 20,
    outlets: int = 3,
    primers_per_outlet: int = 2,
    stagger: float = 0.2,
    semantic: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> ReplayResult:
    """Run the whole replay: start-up, about one second per step, then the last sends
    (the bot sends a chat at most one message every 1.1 s, as Telegram wants)."""
    started = time.monotonic()
    bench = load(bench_path)
    items: list[dict[str, Any]] = bench["items"]
    users = followers(bench)
    with FeedServer() as server:
        feeds = Outlets(server, items, outlets, stagger)
        feeds.show(first=primers_per_outlet)
        # A year goes by in under a minute of wall time: the hourly bound on alerts per
        # storyline (a real-time storm guard) would fold most of it into summaries.
        config = write_config(workdir, feeds.urls, log_level="WARNING",
                              alerts_per_storyline_hour=10_000)
        if semantic:
            with config.open("a", encoding="utf-8") as f:
                f.write("\n\n[matching]\nsemantic = true\n")
        bot = BotProcess(workdir, fake, config, {})
        try:
            bot.start()
            wait_until(lambda: all(len(server.requests_for(p)) >= 2 for p, _, _ in feeds.feeds),
                       what="every feed to be primed")
            for user in users:
                chat = Chat(fake, user.chat_id)
                # A title alone is previewed first: Track it, as a user would press it.
                reply = chat.track(user.title) if user.seed is None else chat.say(
                    f"/track {user.title}", reply_to_text=user.seed)
                if not reply.startswith("Tracking #"):
                    raise AssertionError(f"/track {user.title} answered: {reply}")
                progress(f"chat {user.chat_id}: {reply.splitlines()[0]}")
            # Round-robin: the feeds' first items are the file's first items.
            streamed = items[outlets * primers_per_outlet :]
            begin, end = _when(streamed[0]), _when(streamed[-1])
            progress(f"streaming {len(streamed)} items, {begin:%d %b %Y} to {end:%d %b %Y}, "
                     f"in {steps} steps of {(end - begin) / steps}")
            def dead() -> bool:
                return bot.proc is None or bot.proc.poll() is not None

            t0 = time.monotonic()
            for step in range(1, steps + 1):
                counts = feeds.request_counts()
                if feeds.show(until=begin + (end - begin) * step / steps):
                    wait_until(partial(feeds.fetched_since, counts, dead),
                               what="the bot to poll every feed")
                if dead():
                    raise AssertionError("the bot died mid-stream:\n" + bot.output()[-3000:])
            stream_seconds = time.monotonic() - t0
            db = workdir / "data" / "storywatch.db"
            wait_until(lambda: _outbox_settled(db, len(items)), timeout=300,
                       what="every item stored and every alert sent")
            code = bot.stop()
        finally:
            bot.close()
    return ReplayResult(bench["name"], score(streamed, users, fake), len(streamed),
                        steps, stream_seconds, time.monotonic() - started, code)
