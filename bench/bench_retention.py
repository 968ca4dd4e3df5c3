"""A simulated year of storage: 100 feeds x 50 new items a day, with retention.

Items (~1 KB each: title, a 900-character summary, link) go in through the
repository's own write path, ``Database.commit_poll``: one commit per feed per
simulated day holding that day's 50 items (yesterday's leave the feed body, as
on a real feed). One item in 100 matches one of 10 storylines followed by 2
chats; its alerts are claimed and marked sent the same day, as the sender
would. Pruning runs every simulated hour with the default policy (items 14 days,
alert history 180 days, batches of 500 rows), the way the bot's scheduled job
runs it (``bot.storage.retention.prune``).

Prints, per run: the file size at the end of the year (after a WAL checkpoint),
the rows per table, and the longest single write transaction pruning held.
Medians over ``--runs`` fresh runs. Only prints; nothing asserts.

    .venv/bin/python bench/bench_retention.py [--days 365] [--runs 3] [--items-days 14]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import REPO, machine, med, run_worker, table

FEEDS = 100
PER_DAY = 50
MATCH_EVERY = 100
STORYLINES = 10
CHATS = (1, 2)
START = datetime(2025, 1, 1, tzinfo=UTC)
RETENTION_DEFAULT = 14.0  # bot.settings.RetentionOptions.items_days
WORDS = (
    "minister", "talks", "summit", "trade", "energy", "border", "election", "market",
    "court", "climate", "visit", "accord", "sanctions", "rally", "strike", "budget",
    "ceasefire", "harvest", "vote",
)


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:chars]


def one_run(days: int, items_days: float) -> dict[str, Any]:
    from bot.models import FeedState, Item, Match, Storyline
    from bot.storage.repository import Database, MatchToStore
    from bot.storage.retention import RetentionPolicy, prune

    rng = random.Random(20250101)
    tmp = Path(tempfile.mkdtemp(prefix="sw-retention-"))
    path = tmp / "storywatch.db"
    db = Database.open(path)
    feeds = [db.add_feed(f"https://feed{f}.example.test/rss", now=START).id for f in range(FEEDS)]
    stories = [db.add_storyline(Storyline(0, f"Story {s}"), now=START).id
               for s in range(STORYLINES)]
    for chat in CHATS:
        db.upsert_chat(chat, now=START)
        for s in stories:
            db.subscribe(chat, s, now=START)
    for f in feeds:  # primes every feed, as a first poll does
        db.commit_poll(f, FeedState(), now=START, title="Feed", items=[], matches=[])
    policy = RetentionPolicy(items_days=items_days)
    holds: list[float] = []
    longest = (0.0, "")
    prune_seconds = 0.0
    n = 0
    started = time.monotonic()
    for day in range(days):
        for hour in range(24):
            now = START + timedelta(days=day, hours=hour)
            if hour == 6:  # the day's items arrive
                for f in feeds:
                    items, matches = [], []
                    for _ in range(PER_DAY):
                        n += 1
                        item = Item(f"g:{n}", _text(rng, 80), _text(rng, 900),
                                    f"https://feed{f}.example.test/a/{n}", now, "Feed", f)
                        items.append(item)
                        if n % MATCH_EVERY == 0:
                            matches.append(MatchToStore(
                                Match(item.key, stories[n % STORYLINES], 1.0, "bench")))
                    db.commit_poll(f, FeedState(), now=now, title="Feed", items=items,
                                   matches=matches)
                for entry in db.claim_due_alerts(now, 10_000):
                    db.mark_sent(entry.id, now=now, message_id=1)
            t0 = time.monotonic()
            report = prune(db, now, policy)
            prune_seconds += time.monotonic() - t0
            holds.append(report.longest_hold)
            longest = max(longest, (report.longest_hold, f"{report.longest_step} day {day}"))
    wall = time.monotonic() - started
    rows = {t: int(db._query(f"SELECT COUNT(*) FROM {t}")[0][0])
            for t in ("items", "matches", "outbox", "meta")}
    db._query("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = path.stat().st_size
    holds.sort()
    return {
        "days": days, "items_written": n, "size_mb": size / 1e6, **rows,
        "longest_hold_ms": holds[-1] * 1000,
        "p99_hold_ms": holds[int(len(holds) * 0.99)] * 1000,
        "longest_hold_in": longest[1], "prune_runs": len(holds),
        "prune_seconds": prune_seconds, "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items-days", type=float, default=RETENTION_DEFAULT)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json

        print("BENCH-RESULT " + json.dumps(one_run(args.days, args.items_days)), flush=True)
        return
    print(machine())
    print(f"{args.days} days, items kept {args.items_days:g} days after they leave their feed, "
          "alert history 180 days")
    runs = []
    for r in range(args.runs):
        result = run_worker(Path(__file__), ["--worker", "--days", str(args.days),
                                             "--items-days", str(args.items_days)],
                            timeout=7200)
        print(f"run {r + 1}: {result}", flush=True)
        runs.append(result)
    keys = ("size_mb", "items", "matches", "outbox", "meta", "longest_hold_ms", "p99_hold_ms",
            "prune_seconds", "wall_seconds")
    print(table(["figure", *[f"run {i + 1}" for i in range(len(runs))], "median"],
                [[k, *[float(r[k]) for r in runs], med(runs, k)] for k in keys]))
    print(f"items written per run: {runs[0]['items_written']:,}; prune runs per run: "
          f"{runs[0]['prune_runs']:,} (hourly)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
