"""Collapse benchmark: one 500-item poll against a 36 h window of 2,000 alerted matches.

The situation of issue 12: a feed brings 500 fresh items per poll that all match one
storyline, which already has 2,000 alerts (not duplicates) in the collapse window. The
headlines are generated (seeded): distinct developments made of a template, people,
places and numbers, and, in the poll, rewrites of earlier developments (other verbs,
word order, another outlet's summary) that should collapse into them. On a tree before
issue 12 (main at de08363) it measures the old step the same way: similarity() calls
counted, the collapse run inline on the loop.

Three figures:

* **collapse**: wall time of ``bot.pipeline.collapse`` on the poll alone (pure, no I/O),
  median of ``--runs``, and how many pairs were compared (before issue 12 every
  ``similarity`` call, each re-normalising both texts; after, the pairs scored in C by
  rapidfuzz ``cdist`` and the candidate pairs checked in Python);
* **outcome**: of the poll's rewrites, how many collapsed; of its distinct developments,
  how many were wrongly folded into another;
* **loop**: the pipeline's collapse step run against a real SQLite file holding the
  2,000 alerted matches, while a probe task sleeps 10 ms in a loop and records the
  longest gap beyond that sleep (the longest time the event loop was blocked).

Run: .venv/bin/python bench/bench_collapse.py            (a few seconds after issue 12)
     .venv/bin/python bench/bench_collapse.py --runs 3   (on main before it: about 6 min)
Targets: <= 0.5 s per 500-item collapse; the loop never blocked > 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, table
from bot import pipeline
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore, RecentMatch
from bot.storylines import dedupe
from bot.storylines.text import word_list

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
WINDOW = timedelta(hours=36)

# Made-up names: the bench must not look like any benchmark file.
PEOPLE = word_list(
    "Okafor Lindqvist Moreau Tanaka Haddad Novak Ferreira Kowalski Mbeki Castellano "
    "Ivanova Nakamura Osei Bergstrom Rahman Quispe Dubois Andersen Petrakis Mwangi "
    "Sorensen Alvarez Kuznetsov Hakimi Vargas Lambert Ortega Yilmaz Brennan Sato"
)
PLACES = word_list(
    "Fukushima Miyagi Iwate Aomori Niigata Nagano Osaka Kyoto Hiroshima Sendai Lisbon Porto "
    "Valencia Seville Lyon Marseille Nantes Hamburg Munich Leipzig Krakow Gdansk Brno Graz "
    "Tampere Bergen Aarhus Malmo Ghent Antwerp Utrecht Cork Galway Turin Naples Palermo "
    "Patras Izmir Bursa Tabriz Mosul Basra Sfax Oran Tangier Kano Mombasa Arusha Durban "
    "Recife Cusco Rosario Cali Quito Merida Tijuana Halifax Winnipeg Perth Hobart"
)
TOPICS = word_list("trade energy water grain shipping pension housing tariff fishing rail")
ORGS = ("Central Bank", "Port Authority", "Rail Union", "Mining Board", "Grid Operator")

# Each template: a development, then one way an outlet rewrites it.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{p} arrives in {c} for {t} talks", "{p} lands in {c} for talks on {t}"),
    ("Magnitude {m} earthquake strikes {c} prefecture",
     "Magnitude {m} earthquake hits {c} prefecture"),
    ("Floods kill {n} in {c} as rivers burst their banks", "{n} dead as floods hit {c}"),
    ("{p} and {q} sign {t} agreement in {c}", "{p}, {q} sign {t} deal in {c}"),
    ("Thousands protest in {c} over {t} reform", "In {c}, thousands protest {t} reform"),
    ("{o} in {c} raises fees by {n} percent", "{c} {o} lifts fees {n} percent"),
    ("{p} wins mayoral election in {c}", "{p} elected mayor of {c}"),
    ("Fire at {c} warehouse injures {n}", "{n} hurt in {c} warehouse fire"),
)
SUMMARIES = (
    "Officials in {c} confirmed the news on Monday.",
    "Local media reported it, citing people familiar with the matter in {c}.",
    "It was the main story of the day in {c}, where {t} has long been debated.",
    "Details were still emerging late on Tuesday, a spokesperson said.",
)
REWRITE_OF_NEWEST = 300
_SLOT_RE = re.compile(r"{(\w)}")


@dataclass(frozen=True, slots=True)
class Development:
    """One generated development: its headline, a rewrite of it, and the slots of both."""

    title: str
    rewrite: str
    slots: dict[str, str]


def developments(rng: random.Random, count: int) -> list[Development]:
    """``count`` distinct developments: no two of one template share all their names
    and numbers (the topic alone, a lowercase word, does not make another event)."""
    seen: set[tuple[str, ...]] = set()
    out: list[Development] = []
    while len(out) < count:
        first, second = rng.choice(TEMPLATES)
        p, q = rng.sample(PEOPLE, 2)
        slots = {"p": p, "q": q, "c": rng.choice(PLACES), "t": rng.choice(TOPICS),
                 "o": rng.choice(ORGS), "m": f"{rng.randint(40, 72) / 10:.1f}",
                 "n": str(rng.randint(2, 90))}
        key = (first, *sorted(slots[k] for k in _SLOT_RE.findall(first) if k != "t"))
        if key in seen:
            continue
        seen.add(key)
        out.append(Development(first.format(**slots), second.format(**slots), slots))
    return out


def summary(rng: random.Random, d: Development) -> str:
    """An outlet's own summary: each outlet words it differently."""
    return rng.choice(SUMMARIES).format(**d.slots)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The alerted window, the poll, and which poll items are rewrites."""

    recent: list[Item]
    recent_times: list[datetime]
    poll: list[Item]
    rewrites: set[str]
    storyline_ids: list[int]


def scenario(seed: int, recent: int, poll: int, rewrite_share: float) -> Scenario:
    rng = random.Random(seed)
    devs = developments(rng, recent + poll)
    old, fresh = devs[:recent], devs[recent:]
    times = sorted(NOW - WINDOW + timedelta(seconds=rng.uniform(60, WINDOW.total_seconds() - 900))
                   for _ in old)
    recent_items = [
        Item(f"r{i}", d.title, summary(rng, d), f"https://example.org/r{i}", t, "Outlet A", 1)
        for i, (d, t) in enumerate(zip(old, times, strict=True))
    ]
    poll_items: list[Item] = []
    rewrites: set[str] = set()
    told = list(old)  # what an item of the poll may rewrite: alerted, or earlier in the poll
    for i, d in enumerate(fresh):
        when = NOW - timedelta(seconds=rng.uniform(0, 900))
        if rng.random() < rewrite_share:
            # Outlets pick a story up within hours: a rewrite repeats one of the
            # newest developments (300 is about the last five hours of the window).
            src = rng.choice(told[-REWRITE_OF_NEWEST:])
            key = f"w{i}"
            poll_items.append(Item(key, src.rewrite, summary(rng, src),
                                   f"https://example.net/{key}", when, "Outlet B", 2))
            rewrites.add(key)
        else:
            poll_items.append(Item(f"n{i}", d.title, summary(rng, d),
                                   f"https://example.org/n{i}", when, "Outlet A", 2))
            told.append(d)
    return Scenario(recent_items, times, poll_items, rewrites, [1])


def recent_matches(s: Scenario) -> list[RecentMatch]:
    return [RecentMatch(1, it, i + 1) for i, it in enumerate(s.recent)]


def found(s: Scenario) -> tuple[list[Match], dict[str, Item]]:
    return [Match(it.key, 1, 0.9, "bench") for it in s.poll], {it.key: it for it in s.poll}


@contextmanager
def counting(name: str) -> Iterator[list[int]]:
    """Count calls of ``dedupe.<name>`` (a pair comparison) while the block runs."""
    calls = [0]
    original: Callable[..., Any] = getattr(dedupe, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(dedupe, name, counted)
    try:
        yield calls
    finally:
        setattr(dedupe, name, original)


def time_collapse(
    s: Scenario, runs: int, max_recent: int | None
) -> tuple[list[float], list[MatchToStore]]:
    matches, items = found(s)
    recent = recent_matches(s)
    times: list[float] = []
    out: list[MatchToStore] = []
    extra: tuple[Any, ...] = ()
    if max_recent is not None:
        extra = (dedupe.DedupeConfig(max_recent=max_recent),)
    for _ in range(runs):
        t0 = time.perf_counter()
        out = pipeline.collapse(matches, items, recent, *extra)
        times.append(time.perf_counter() - t0)
    return times, out


def pairs_compared(s: Scenario, max_recent: int | None) -> dict[str, int]:
    """How many pairs one collapse compares, in C (cdist) and in Python."""
    matches, items = found(s)
    recent = recent_matches(s)
    if hasattr(dedupe, "find_duplicates"):
        config = dedupe.DEFAULT_DEDUPE
        if max_recent is not None:
            config = dedupe.DedupeConfig(max_recent=max_recent)
        report = dedupe.find_duplicates(
            [dedupe.Report.of(items[m.item_key]) for m in matches],
            [dedupe.Report.of(r.item) for r in recent],
            config,
        )
        return {"scored in C (cdist)": report.scored_pairs,
                "checked in Python": report.checked_pairs}
    with counting("similarity") as calls:
        pipeline.collapse(matches, items, recent)
    return {"similarity() calls": calls[0]}


def outcome(s: Scenario, out: list[MatchToStore]) -> tuple[int, int]:
    """(rewrites collapsed, distinct developments wrongly collapsed)."""
    rewrites = sum(1 for m in out if m.duplicate_of_key and m.match.item_key in s.rewrites)
    wrong = sum(1 for m in out if m.duplicate_of_key and m.match.item_key not in s.rewrites)
    return rewrites, wrong


def fill_db(db: Database, s: Scenario) -> None:
    """The 2,000 alerted matches, committed at their own times inside the window."""
    feed = db.add_feed("https://127.0.0.1/bench.xml", now=NOW - WINDOW)
    story = db.add_storyline(Storyline(id=0, title="Bench storyline"), now=NOW - WINDOW)
    db.commit_poll(feed.id, FeedState(), now=NOW - WINDOW, title=None, items=[], matches=[])
    step = 50
    for i in range(0, len(s.recent), step):
        chunk = s.recent[i : i + step]
        db.commit_poll(feed.id, FeedState(), now=s.recent_times[i + len(chunk) - 1], title=None,
                       items=chunk,
                       matches=[MatchToStore(Match(it.key, story.id, 0.9, "bench"))
                                for it in chunk])
    s.storyline_ids[0] = story.id


async def inline_step(
    db: Database, matches: list[Match], items: dict[str, Item], now: datetime
) -> list[MatchToStore]:
    """The pipeline's step before issue 12: read in a thread, collapse on the loop."""
    ids = sorted({m.storyline_id for m in matches})
    recent = await asyncio.to_thread(db.recent_matches, ids, now - pipeline.COLLAPSE_WINDOW)
    return pipeline.collapse(matches, items, recent)


async def loop_lag(db: Database, s: Scenario, runs: int) -> tuple[list[float], list[float]]:
    """(longest loop block per run, wall time of the step per run), in seconds."""
    items = {it.key: it for it in s.poll}
    matches = [Match(it.key, s.storyline_ids[0], 0.9, "bench") for it in s.poll]
    step = getattr(pipeline, "collapse_matches", None)
    blocks: list[float] = []
    walls: list[float] = []
    for _ in range(runs):
        worst = [0.0]
        done = asyncio.Event()

        async def probe(worst: list[float] = worst, done: asyncio.Event = done) -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.010)
                now = time.perf_counter()
                worst[0] = max(worst[0], now - last - 0.010)
                last = now

        task = asyncio.create_task(probe())
        await asyncio.sleep(0.05)  # the probe is running before the step starts
        t0 = time.perf_counter()
        if step is not None:
            await step(db, matches, items, NOW)
        else:
            await inline_step(db, matches, items, NOW)
        walls.append(time.perf_counter() - t0)
        done.set()
        await task
        blocks.append(worst[0])
    return blocks, walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--recent", type=int, default=2000)
    ap.add_argument("--poll", type=int, default=500)
    ap.add_argument("--rewrites", type=float, default=0.3, help="share of the poll")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--max-recent", type=int, default=None,
                    help="alerts considered per storyline in the pure collapse "
                    "(default: DedupeConfig's; the pipeline step always uses the default)")
    args = ap.parse_args()
    print(machine())
    s = scenario(args.seed, args.recent, args.poll, args.rewrites)
    print(f"poll {len(s.poll)} items ({len(s.rewrites)} rewrites), "
          f"window {len(s.recent)} alerted matches, one storyline, {args.runs} runs")

    times, out = time_collapse(s, args.runs, args.max_recent)
    collapsed, wrong = outcome(s, out)
    print(table(["figure", "value"], [
        ["collapse median s", round(statistics.median(times), 3)],
        ["collapse runs s", ", ".join(f"{t:.3f}" for t in times)],
        *([k, f"{v:,}"] for k, v in pairs_compared(s, args.max_recent).items()),
        ["rewrites collapsed", f"{collapsed} of {len(s.rewrites)}"],
        ["distinct developments collapsed", f"{wrong} of {len(s.poll) - len(s.rewrites)}"],
    ]))

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(Path(tmp) / "bench.db")
        try:
            fill_db(db, s)
            blocks, walls = asyncio.run(loop_lag(db, s, args.runs))
        finally:
            db.close()
    print(table(["pipeline step (read window + collapse)", "value"], [
        ["step median s", round(statistics.median(walls), 3)],
        ["longest loop block median ms", round(1000 * statistics.median(blocks), 1)],
        ["longest loop block max ms", round(1000 * max(blocks), 1)],
        ["per run ms", ", ".join(f"{1000 * b:.0f}" for b in blocks)],
    ]))


if __name__ == "__main__":
    main()
