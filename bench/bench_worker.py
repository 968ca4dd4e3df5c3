"""What the parse worker spends on one farm feed, stage by stage, in one process.

A first pass is paced by the parse pool's worker (docs/performance.md, section 8):
for each feed it parses the body, reads the facts of its items for the matcher, and
pickles the result for the bot, which unpickles it. This bench times those four
stages on the farm's own bodies (``feedfarm``, built in memory: no server, no pool),
in CPU seconds of this process, so two checkouts can be compared stage by stage:

    .venv/bin/python bench/bench_worker.py --feeds 200 --runs 5

Run it from each checkout in turn (``cd <checkout> && ...``): the bench imports the
``bot`` package of the checkout it is in. Medians of ``--runs``; it only prints.

CPU seconds here move by a fifth or more between runs of the same code (the host's
speed varies within minutes). ``--instructions`` counts the instructions instead, with
valgrind's callgrind, for each checkout of ``--trees``: the bench run under callgrind
with one run and with three, half the difference divided by the feeds, so start-up,
building the bodies and the warm-up cancel out. Counted: all four stages (the bot's
loads too), in this one process:

    .venv/bin/python bench/bench_worker.py --instructions --feeds 50 --trees /tmp/old,.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import feedfarm
from _common import REPO, callgrind, machine, median

from bot.parsing.feeds import ParsedFeed, parse_feed
from bot.storylines.reading import with_facts

HEADERS = {"content-type": "application/rss+xml"}


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def one_run(bodies: list[bytes]) -> dict[str, float]:
    """CPU seconds per stage over every body."""
    spent = {"parse": 0.0, "facts": 0.0, "dumps": 0.0, "loads": 0.0}
    for n, body in enumerate(bodies):
        url = f"http://127.0.0.1/v/{n}.xml"
        t, parsed = _timed(lambda b=body, u=url: parse_feed(b, HEADERS, u))
        spent["parse"] += t
        assert isinstance(parsed, ParsedFeed)
        t, read = _timed(lambda p=parsed: replace(p, items=tuple(map(with_facts, p.items))))
        spent["facts"] += t
        t, blob = _timed(lambda r=read: pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
        spent["dumps"] += t
        assert isinstance(blob, bytes)
        t, _ = _timed(lambda b=blob: pickle.loads(b))
        spent["loads"] += t
    return spent


def instructions(tree: Path, feeds: int, runs: int) -> int:
    """Instructions callgrind counts in this bench, run in ``tree`` with ``runs`` runs."""
    count, out = callgrind(
        ["bench/bench_worker.py", "--feeds", str(feeds), "--runs", str(runs)], tree)
    if f"checkout: {tree}" not in out:
        raise SystemExit(f"the bench in {tree} imported another checkout's bot:\n{out}")
    return count


def count_instructions(trees: list[Path], feeds: int) -> None:
    print(machine())
    print(f"{feeds} farm feeds; instructions of one run = (3 runs - 1 run) / 2, all four "
          "stages", flush=True)
    for tree in trees:
        one, three = instructions(tree, feeds, 1), instructions(tree, feeds, 3)
        per_feed = (three - one) / 2 / feeds
        print(f"  {tree}: {one:,} (1 run), {three:,} (3 runs): "
              f"{per_feed / 1e6:.2f} M instructions a feed", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--feeds", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--instructions", action="store_true",
                   help="count instructions under callgrind, per checkout (--trees)")
    p.add_argument("--trees", default=".", help="checkouts, comma-separated (default: this)")
    args = p.parse_args()
    if args.instructions:
        count_instructions([Path(t).resolve() for t in args.trees.split(",")], args.feeds)
        return
    print(machine())
    print(f"checkout: {REPO}")
    farm = feedfarm._Farm(feedfarm.FarmSpec(feeds=max(args.feeds, 1)))
    bodies = [farm.body(i) for i in range(args.feeds)]
    items = sum(len(parse_feed(b, HEADERS, "http://127.0.0.1/").items) for b in bodies)
    print(f"{args.feeds} farm feeds, {items} items, {sum(map(len, bodies)) // 1024} KB; "
          f"medians of {args.runs} runs (CPU of this process)")
    one_run(bodies[:10])  # warm the caches (gazetteer, stems) as a running worker has them
    runs = [one_run(bodies) for _ in range(args.runs)]
    total = [sum(r.values()) - r["loads"] for r in runs]
    for stage in ("parse", "facts", "dumps", "loads"):
        values = [r[stage] for r in runs]
        print(f"  {stage:6s} {median(values) / args.feeds * 1e3:6.2f} ms a feed, "
              f"{median(values) / items * 1e6:6.1f} us an item   "
              f"(runs: {' / '.join(f'{v / args.feeds * 1e3:.2f}' for v in values)})")
    print(f"  worker (parse + facts + dumps) {median(total) / args.feeds * 1e3:.2f} ms a feed; "
          f"the bot's loads apart")


if __name__ == "__main__":
    main()
