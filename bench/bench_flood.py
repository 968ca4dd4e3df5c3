"""The event loop during a flood: 500 new matching items in one poll, with 2,000
recently alerted matches of the same storyline to compare them against.

The real ``Poller`` (``bootstrap.running_poller``: forkserver parse pool,
matcher warmed up on the stored items, duplicate collapse as the pipeline calls
it) polls one feed served by ``python -m http.server`` in its own process,
after one warm-up pass over a one-item feed (a running bot has polled before). A
probe coroutine asks to wake every 5 ms; how late it wakes is how long the loop
was blocked. After the pass, the real ``Sender`` drains the outbox for 20 s to
the fake Bot API (in its own process), while the probe keeps measuring.

Prints, per run: the longest and p99 loop stall during the pass and during
delivery, the most CPU the loop thread itself spent between two wake-ups,
matches, alerts queued (one by one, "+N more" edits, summaries), messages sent.
Medians over ``--runs`` fresh interpreters. Only prints; nothing asserts.

    .venv/bin/python bench/bench_flood.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from _common import REPO, bench_settings, machine, med, percentile, run_worker, table

from tests.support.feed_server import rss_document

STORY = "Wang Yi visit to Moscow"
RECENT = 2_000
BACKGROUND = 3_000
FLOOD = 500
CHATS = (1, 2)
TICK = 0.005
DELIVER_SECONDS = 20.0
VOCABULARY = (
    "energy", "grain", "arctic", "shipping", "nuclear", "visa", "bank", "payments",
    "rail", "corridor", "space", "gas", "pipeline", "oil", "student", "tourism",
    "military", "drills", "wheat", "quotas", "yuan", "settlement", "fertiliser", "satellite",
    "launch", "border", "trade", "summit", "treaty", "sanctions", "ceasefire", "harvest",
    "court", "budget", "election", "vote", "customs", "port", "bridge", "metro",
    "airline", "cyber", "internet", "tariffs", "loans", "bonds", "gold", "copper",
    "timber", "fishery",
)


class Probe:
    """Measures how late the loop runs a task that asks to wake every TICK seconds
    (``lags``, wall time), and how much CPU the loop's own thread spent between
    two wake-ups (``cpu``): a late wake-up with little loop CPU was the machine or
    the GIL (another thread of the bot computing), not work done on the loop."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.cpu: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            asked, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, time.perf_counter() - asked - TICK))
            self.cpu.append(time.thread_time() - cpu)

    def start(self) -> None:
        self.lags, self.cpu = [], []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.lags


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _headline(rng: random.Random, n: int, shape: str = "Wang Yi in Moscow talks on") -> str:
    """A headline that no other one repeats (few collapse as duplicates)."""
    first, second = rng.sample(VOCABULARY, 2)
    return f"{shape} {first} and {second} ({n})"


def _flood_body(now: datetime, rng: random.Random) -> bytes:
    entries = []
    for n in range(FLOOD):
        title = _headline(rng, n)
        entries.append({
            "guid": f"flood-{n}", "title": title,
            "description": " ".join(rng.sample(VOCABULARY, 6)),
            "link": f"https://wire.example.test/flood/{n}",
            "pubDate": format_datetime(now - timedelta(minutes=n % 600), usegmt=True),
        })
    return rss_document("Wire", entries)


def _seed_recent(db: Any, story_id: int, now: datetime, rng: random.Random) -> None:
    """2,000 matches of the storyline alerted over the last 30 hours, all sent, and
    3,000 other items (the rest of the news)."""
    from bot.models import FeedState, Item, Match
    from bot.storage.repository import MatchToStore

    feed = db.add_feed("http://127.0.0.1:9/earlier.xml", now=now - timedelta(days=2))
    # Not due in the measured pass: only the flood feed is polled.
    later = FeedState(next_check=now + timedelta(days=1))
    db.commit_poll(feed.id, later, now=now - timedelta(days=2), title="Earlier",
                   items=[], matches=[])
    for batch in range(RECENT // 100):
        when = now - timedelta(hours=30) + timedelta(minutes=15 * batch)
        items = [Item(f"g:early-{batch}-{k}",
                      _headline(rng, batch * 100 + k, "Wang Yi and Lavrov talk"),
                      " ".join(rng.sample(VOCABULARY, 6)), f"https://e.test/{batch}/{k}",
                      when, "Earlier", feed.id) for k in range(100)]
        db.commit_poll(feed.id, later, now=when, title="Earlier", items=items,
                       matches=[MatchToStore(Match(i.key, story_id, 1.0, "seed"))
                                for i in items])
        for entry in db.claim_due_alerts(when, 10_000):
            db.mark_sent(entry.id, now=when, message_id=1)
    # The rest of the news stream, newest: what the matcher warms up on besides.
    background = [Item(f"g:bg-{k}", _headline(rng, k, "Markets watch"),
                       " ".join(rng.sample(VOCABULARY, 6)), f"https://b.test/{k}",
                       now - timedelta(hours=1), "Earlier", feed.id) for k in range(BACKGROUND)]
    db.commit_poll(feed.id, later, now=now - timedelta(hours=1), title="Earlier",
                   items=background, matches=[])


def prepare() -> tuple[Any, Any, subprocess.Popen[bytes]]:
    """Settings, the seeded database, and the flood feed's server process."""
    from bot.models import FeedState, Storyline
    from bot.storage.repository import Database

    tmp = Path(tempfile.mkdtemp(prefix="sw-flood-"))
    settings = bench_settings(tmp / "data", poll_interval=300.0)
    db = Database.open(settings.database_path)
    now = datetime.now(UTC)
    story = db.add_storyline(Storyline(0, STORY), now=now - timedelta(days=3))
    for chat in CHATS:
        db.upsert_chat(chat, now=now)
        db.subscribe(chat, story.id, now=now)
    rng = random.Random(500_2000)
    _seed_recent(db, story.id, now, rng)
    site = tmp / "site"
    site.mkdir()
    (site / "flood.xml").write_bytes(_flood_body(now, rng))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    (site / "warm.xml").write_bytes(rss_document("Warm", [
        {"guid": "w1", "title": "Wang Yi in Moscow: warm-up", "link": "https://w.test/1"}]))
    for name in ("warm", "flood"):
        feed = db.add_feed(f"http://127.0.0.1:{port}/{name}.xml", now=now)
        # Primed, so new items are matched; the flood feed is due after the warm-up.
        due = now if name == "warm" else now + timedelta(hours=1)
        db.commit_poll(feed.id, FeedState(next_check=due), now=now, title=name, items=[],
                       matches=[])
    return settings, db, server


async def measure(settings: Any, db: Any) -> dict[str, Any]:
    from bench_deliver import TOKEN, RemoteFake
    from telegram import Bot

    from bot.bootstrap import running_poller
    from bot.delivery.sender import Sender

    probe = Probe()
    async with running_poller(settings, db) as poller:
        # A running bot has done passes before the flood: the code each stage
        # imports on first use is loaded, as it would be.
        await poller.poll_due()
        flood_at = datetime.now(UTC) + timedelta(hours=2)
        probe.start()
        started = time.perf_counter()
        report = await poller.poll_due(flood_at)
        pass_seconds = time.perf_counter() - started
        pass_lags = await probe.stop()
        pass_cpu = probe.cpu
    rows = db._query("SELECT summary_count > 0 AS summary, kind, COUNT(*) AS n "
                     "FROM outbox WHERE status = 'pending' GROUP BY 1, 2")
    queued = {(bool(r["summary"]), r["kind"]): int(r["n"]) for r in rows}
    with RemoteFake() as fake:
        async with Bot(TOKEN, base_url=fake.api_url) as bot:
            sender = Sender(db, bot)
            probe.start()
            sender.start()
            await asyncio.sleep(DELIVER_SECONDS)
            await sender.stop()
            deliver_lags = await probe.stop()
        sent = len(fake.sent())
    after = db.outbox_counts()
    [feed_report] = [f for f in report.feeds if f.url.endswith("/flood.xml")]
    return {
        "new_items": feed_report.new_items, "matches": feed_report.matches,
        "error": feed_report.error,
        "pass_seconds": pass_seconds,
        "pass_max_stall_ms": max(pass_lags) * 1000,
        "pass_p99_stall_ms": percentile(pass_lags, 0.99) * 1000,
        "pass_max_loop_cpu_ms": max(pass_cpu) * 1000,
        "deliver_max_stall_ms": max(deliver_lags) * 1000,
        "deliver_max_loop_cpu_ms": max(probe.cpu) * 1000,
        "queued_single": queued.get((False, "send"), 0),
        "queued_edits": queued.get((False, "edit"), 0),
        "queued_summaries": queued.get((True, "send"), 0),
        "sent_in_20s": sent,
        # Edits of the seeded alerts fail at the fake (it never sent those messages).
        "failed_in_20s": after["failed"],
        "pending_after_20s": after["pending"],
    }


def one_run() -> dict[str, Any]:
    settings, db, server = prepare()
    try:
        return asyncio.run(measure(settings, db))
    finally:
        server.terminate()
        server.wait(10)
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("BENCH-RESULT " + json.dumps(one_run()), flush=True)
        return
    print(machine())
    runs = []
    for r in range(args.runs):
        result = run_worker(Path(__file__), ["--worker"], timeout=1200)
        print(f"run {r + 1}: {result}", flush=True)
        runs.append(result)
    keys = ("new_items", "matches", "pass_seconds", "pass_max_stall_ms", "pass_p99_stall_ms",
            "pass_max_loop_cpu_ms", "deliver_max_stall_ms", "deliver_max_loop_cpu_ms",
            "queued_single", "queued_edits", "queued_summaries", "sent_in_20s",
            "failed_in_20s", "pending_after_20s")
    print(table(["figure", *[f"run {i + 1}" for i in range(len(runs))], "median"],
                [[k, *[float(r[k]) for r in runs], med(runs, k)] for k in keys]))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
