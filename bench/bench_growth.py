"""Growth benchmark: how Storywatch's CPU and memory grow from 100 to 1,000 to 5,000 feeds.

The same measured worker as ``bench/bench_poll.py`` (the real ``Poller`` from
``bootstrap.running_poller``, a fresh interpreter and data dir per run, feeds of 50
items and 10-200 KB from :mod:`bench.feedfarm` in its own process), at several feed
counts. Per count: first pass, steady state with 304s, steady state with unchanged
bodies and no validators: wall s, CPU s (process + parse pool), peak RSS of process +
children, and CPU per 1,000 feeds (flat means linear growth).

Run: .venv/bin/python bench/bench_growth.py                       (about 15 minutes)
     .venv/bin/python bench/bench_growth.py --sizes 100,1000 --runs 3
     .venv/bin/python bench/bench_growth.py --sizes 5000 --runs 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, med, table
from bench.bench_poll import PASSES, measure
from bench.feedfarm import FarmSpec, FeedFarm


def main() -> None:
    p = argparse.ArgumentParser(description="growth benchmark")
    p.add_argument("--sizes", default="100,1000,5000")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(machine())
    print(f"medians of {args.runs} runs; storywatch only (the naive bot is in bench_poll.py)",
          flush=True)
    results: dict[int, list[Any]] = {}
    for n in sizes:
        print(f"{n} feeds:", flush=True)
        with FeedFarm(FarmSpec(feeds=n)) as farm:
            results[n] = measure(farm, n, args.runs, ["storywatch"])["storywatch"]
    rows = []
    for n, runs in results.items():
        for pass_ in PASSES:
            per = [r[pass_] for r in runs]
            cpu = med(per, "cpu")
            rows.append([f"{n:,}", pass_, med(per, "wall"), cpu, cpu * 1000 / n,
                         med(per, "rss_self"), med(per, "rss_tree"),
                         int(med(per, "errors"))])
    print()
    print(table(["feeds", "pass", "wall s", "CPU s", "CPU s per 1,000 feeds",
                 "peak RSS MB (proc)", "proc + children MB", "errors"], rows))


if __name__ == "__main__":
    main()
