"""Many workers on one database: scaling, SQLite vs PostgreSQL, delivery, failover.

Real ``storywatch worker`` processes (``python -m bot worker``), each in its own
session, against the local feed farm (:mod:`bench.feedfarm`, its own process) and
the fake Bot API (:mod:`tests.support.fake_telegram`, Telegram's flood limits on).
The database is a fresh PostgreSQL schema (``STORYWATCH_TEST_POSTGRES_URL``, default
the local server) or a SQLite file in a temporary directory.

* ``scaling``  - N feeds polled by 1, 2 and 4 workers: the first pass (every feed new,
  items stored) and a steady pass (every feed due again: 304s), wall seconds, CPU
  seconds of every worker and its parse pool, and the feeds fetched twice in the pass
  (farm requests minus feeds; want 0). ``--engines sqlite postgres`` with
  ``--workers 1`` is the overhead comparison.
* ``delivery`` - 1,000 alerts (100 chats x 10) queued at once, delivered by the
  workers (the one holding the sender lease sends): msg/s, 429s the fake Bot API
  answered (flood violations, want 0), duplicates (want 0), lost (want 0).
* ``failover`` - a pass over N feeds by 3 workers, one killed with SIGKILL (its whole
  process group) once a third of the feeds are polled: seconds until every feed it
  held is polled by another; then 1,000 alerts with the sending worker SIGKILLed
  mid-delivery: lost (want 0) and duplicates.

Run: .venv/bin/python bench/bench_workers.py scaling --feeds 2000
     .venv/bin/python bench/bench_workers.py scaling --feeds 1000 --workers 1 \
         --engines sqlite postgres
     .venv/bin/python bench/bench_workers.py delivery
     .venv/bin/python bench/bench_workers.py failover --feeds 1000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cpu_seconds, descendants, machine, table
from bench.feedfarm import FarmSpec, FeedFarm
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.support.engines import database_env, open_for_env
from tests.support.fake_telegram import FakeTelegram

REPO = Path(__file__).resolve().parents[1]
TOKEN = "123:BENCH"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def wait(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Workers:
    """``storywatch worker`` processes, each a session leader (killed with its pool)."""

    def __init__(self, tmp: Path, env: dict[str, str], fake: FakeTelegram, args: list[str]):
        self.tmp, self.env, self.fake, self.args = tmp, env, fake, args
        self.procs: list[subprocess.Popen[bytes]] = []
        config = tmp / "storywatch.toml"
        config.write_text('log_level = "INFO"\n[fetch]\nconcurrency = 32\nper_host = 32\n')
        self.config = config

    def start(self, n: int) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STORYWATCH_", "TELEGRAM_")) and not k.endswith("_PROXY")}
        env.update({
            "TELEGRAM_BOT_TOKEN": TOKEN, "STORYWATCH_TELEGRAM_API_URL": self.fake.api_url,
            "STORYWATCH_DATA_DIR": str(self.tmp / "data"), "STORYWATCH_CONFIG": str(self.config),
            "STORYWATCH_POLL_INTERVAL": "3600", "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true",
            "NO_PROXY": "127.0.0.1", "PYTHONPATH": str(REPO), **self.env,
        })
        for _ in range(n):
            log = (self.tmp / f"worker-{len(self.procs)}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bot", "worker", *self.args], cwd=self.tmp, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        wait(lambda: all("polling feeds every" in self.log(i) for i in range(len(self.procs))),
             120, "the workers to start")

    def log(self, i: int) -> str:
        path = self.tmp / f"worker-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for w in self.procs if w.poll() is None
                   for p in [w.pid, *descendants(w.pid)])

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for w in self.procs:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in self.procs:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill(w)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.pid, signal.SIGKILL)  # a pool process left behind


@contextmanager
def world(engine: str) -> Iterator[tuple[Path, dict[str, str], Database, FakeTelegram]]:
    with tempfile.TemporaryDirectory() as tmp_name, database_env(engine) as env, \
            FakeTelegram(TOKEN) as fake:
        tmp = Path(tmp_name)
        db = open_for_env(env, tmp / "data")
        try:
            yield tmp, env, db, fake
        finally:
            db.close()


def polled_since(db: Database, since: datetime) -> int:
    with db.transaction() as c:
        return int(c.execute("SELECT COUNT(*) FROM feeds WHERE last_checked >= ?",
                             (since.isoformat(),)).fetchone()[0])


def fetches(farm: FeedFarm) -> int:
    s = farm.stats()
    return int(s.get("200", 0)) + int(s.get("304", 0))


def add_parked_feeds(db: Database, urls: list[str]) -> None:
    now = datetime.now(UTC)
    for url in urls:
        db.add_feed(url, now=now)
    with db.transaction() as c:  # not due until the clock starts
        c.execute("UPDATE feeds SET next_check = ?", (FAR.isoformat(),))


def timed_pass(db: Database, farm: FeedFarm, workers: Workers, feeds: int,
               timeout: float) -> dict[str, float]:
    cpu0, req0 = workers.cpu(), fetches(farm)
    start = datetime.now(UTC)
    t0 = time.monotonic()
    db.make_all_due()
    wait(lambda: polled_since(db, start) >= feeds, timeout, "the pass", step=0.1)
    wall = time.monotonic() - t0
    return {"wall": wall, "cpu": workers.cpu() - cpu0,
            "twice": fetches(farm) - req0 - feeds}


def scaling(args: argparse.Namespace) -> None:
    rows = []
    spec = FarmSpec(feeds=args.feeds, items=50, slow_every=0)
    with FeedFarm(spec) as farm:
        urls = farm.urls("v")
        for engine in args.engines:
            for n in args.workers:
                with world(engine) as (tmp, env, db, fake):
                    add_parked_feeds(db, urls)
                    workers = Workers(tmp, env, fake, ["--batch", str(args.batch)])
                    try:
                        workers.start(n)
                        first = timed_pass(db, farm, workers, len(urls), args.timeout)
                        steady = timed_pass(db, farm, workers, len(urls), args.timeout)
                    finally:
                        workers.stop()
                rows.append((engine, n, first, steady))
                print(f"  {engine} x{n}: first {first['wall']:.1f}s / {first['cpu']:.1f} CPU-s, "
                      f"steady {steady['wall']:.1f}s / {steady['cpu']:.1f} CPU-s, "
                      f"twice {first['twice']:.0f}+{steady['twice']:.0f}", flush=True)
    base = {e: next((f["wall"], s["wall"]) for en, n, f, s in rows if en == e)
            for e in args.engines}
    print(table(
        ["engine", "workers", "first wall s", "first CPU s", "steady wall s", "steady CPU s",
         "speed-up first / steady", "feeds fetched twice"],
        [(e, n, f"{f['wall']:.1f}", f"{f['cpu']:.1f}", f"{s['wall']:.1f}", f"{s['cpu']:.1f}",
          f"{base[e][0] / f['wall']:.2f} / {base[e][1] / s['wall']:.2f}",
          f"{f['twice'] + s['twice']:.0f}")
         for e, n, f, s in rows],
    ))


def queue_alerts(db: Database, chats: int, per_chat: int) -> None:
    now = datetime.now(UTC)
    feed = db.add_feed("http://127.0.0.1:9/bench.xml", now=now, title="Bench")
    db.commit_poll(feed.id, FeedState(next_check=FAR), now=now, title="Bench", items=[],
                   matches=[])
    story = db.add_storyline(Storyline(0, "Bench storyline"), now=now)
    for c in range(1, chats + 1):
        db.upsert_chat(1000 + c, now=now)
        db.subscribe(1000 + c, story.id, now=now)
    items = [Item(f"k{n}", f"Headline number {n}", "", f"https://e.test/{n}", now, "Src",
                  feed.id) for n in range(per_chat)]
    db.commit_poll(feed.id, FeedState(next_check=FAR), now=now, title="Bench", items=items,
                   matches=[MatchToStore(Match(i.key, story.id, 1.0, "bench")) for i in items])


def delivered(fake: FakeTelegram) -> Counter[tuple[int, str]]:
    return Counter((m.chat_id, m.current.split("\n")[1]) for m in fake.all_messages())


def delivery_run(engine: str, n: int, chats: int, per_chat: int, kill_sender_after: int | None,
                 timeout: float) -> dict[str, Any]:
    total = chats * per_chat
    with world(engine) as (tmp, env, db, fake):
        fake.flood_limits = True
        workers = Workers(tmp, env, fake, ["--sender-ttl", "3", "--claim-lease", "10"])
        try:
            workers.start(n)
            wait(lambda: db.lease_holder("sender", datetime.now(UTC)) is not None, 60,
                 "a sender to be elected")
            t0 = time.monotonic()
            queue_alerts(db, chats, per_chat)
            killed_at = None
            if kill_sender_after is not None:
                wait(lambda: len(fake.all_messages()) >= kill_sender_after, timeout, "sends")
                holder = db.lease_holder("sender", datetime.now(UTC)) or ""
                victim = next(w for w in workers.procs if f":{w.pid}:" in holder)
                workers.kill(victim)
                killed_at = time.monotonic() - t0
            wait(lambda: len(delivered(fake)) >= total, timeout, "every alert", step=0.1)
            wall = time.monotonic() - t0

            def settled() -> bool:
                c = db.outbox_counts()
                return c["pending"] + c["sending"] == 0

            # A claim the killed sender left is sent again once it expires: a duplicate
            # shows only then.
            wait(settled, timeout, "the outbox to settle")
            time.sleep(2)
            got = delivered(fake)
            counts = db.outbox_counts()
        finally:
            workers.stop()
    return {"engine": engine, "workers": n, "alerts": total, "wall": wall,
            "rate": total / wall, "violations": fake.count_429(),
            "duplicates": sum(c - 1 for c in got.values()), "lost": total - len(got),
            "killed_at": killed_at, "outbox": counts}


def delivery(args: argparse.Namespace) -> None:
    rows = []
    for engine in args.engines:
        r = delivery_run(engine, args.workers[0], 100, args.alerts // 100, None, args.timeout)
        rows.append(r)
        print(f"  {r}", flush=True)
    print(table(["engine", "workers", "alerts", "wall s", "msg/s", "429s (flood violations)",
                 "duplicates", "lost"],
                [(r["engine"], r["workers"], r["alerts"], f"{r['wall']:.1f}", f"{r['rate']:.1f}",
                  r["violations"], r["duplicates"], r["lost"]) for r in rows]))


def failover(args: argparse.Namespace) -> None:
    engine = args.engines[0]
    spec = FarmSpec(feeds=args.feeds, items=50, slow_every=10, slow_delay=1.0)
    with FeedFarm(spec) as farm, world(engine) as (tmp, env, db, fake):
        urls = farm.urls("v")
        add_parked_feeds(db, urls)
        workers = Workers(tmp, env, fake, ["--batch", "20", "--feed-lease", str(args.lease)])
        try:
            workers.start(3)
            req0 = fetches(farm)
            start = datetime.now(UTC)
            t0 = time.monotonic()
            db.make_all_due()
            wait(lambda: polled_since(db, start) >= len(urls) // 3, args.timeout, "a third")
            victim = workers.procs[0]
            held: list[int] = []

            def holding() -> bool:
                with db.transaction() as c:
                    held[:] = [int(r[0]) for r in c.execute(
                        "SELECT id FROM feeds WHERE leased_by LIKE ? AND leased_until > ?",
                        (f"%:{victim.pid}:%", datetime.now(UTC).isoformat())).fetchall()]
                return bool(held)

            wait(holding, args.timeout, "the victim to hold leases", step=0.02)
            workers.kill(victim)
            killed = time.monotonic()
            killed_at = datetime.now(UTC)

            def held_done() -> bool:
                with db.transaction() as c:
                    marks = ",".join("?" * len(held)) or "NULL"
                    return int(c.execute(
                        f"SELECT COUNT(*) FROM feeds WHERE id IN ({marks}) "
                        "AND last_checked >= ?", (*held, killed_at.isoformat())
                    ).fetchone()[0]) == len(held)

            wait(held_done, args.timeout, "the killed worker's feeds", step=0.1)
            takeover = time.monotonic() - killed
            wait(lambda: polled_since(db, start) >= len(urls), args.timeout, "the pass")
            wall = time.monotonic() - t0
            twice = fetches(farm) - req0 - len(urls)
        finally:
            workers.stop()
    print(f"  feeds: {len(urls)}, killed worker held {len(held)} leased feeds; "
          f"all polled again {takeover:.1f}s after SIGKILL (lease {args.lease:.0f}s); "
          f"pass {wall:.1f}s; fetched twice {twice}", flush=True)
    r = delivery_run(engine, 3, 100, args.alerts // 100, args.alerts // 3, args.timeout)
    print(f"  delivery with the sender SIGKILLed after {args.alerts // 3} sends: {r}", flush=True)
    print(table(
        ["what", "figure"],
        [("feeds, workers", f"{len(urls)}, 3 (one SIGKILLed after a third was polled)"),
         ("its leased feeds", len(held)),
         ("until they were polled by another", f"{takeover:.1f} s (feed lease {args.lease:.0f} s)"),
         ("feeds fetched twice in the pass", twice),
         ("alerts, sender SIGKILLed mid-delivery", f"{r['alerts']}, at {r['killed_at']:.1f} s"),
         ("lost", r["lost"]), ("duplicates", r["duplicates"]),
         ("429s", r["violations"]), ("all delivered after", f"{r['wall']:.1f} s")],
    ))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["scaling", "delivery", "failover"])
    p.add_argument("--feeds", type=int, default=2000)
    p.add_argument("--workers", type=int, nargs="+", default=None)
    p.add_argument("--engines", nargs="+", default=["postgres"], choices=["sqlite", "postgres"])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--alerts", type=int, default=1000)
    p.add_argument("--lease", type=float, default=10.0, help="feed lease (failover), s")
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args()
    args.workers = args.workers or ([1, 2, 4] if args.mode == "scaling" else [3])
    print(machine())
    print(f"load average at start: {os.getloadavg()}")
    {"scaling": scaling, "delivery": delivery, "failover": failover}[args.mode](args)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
