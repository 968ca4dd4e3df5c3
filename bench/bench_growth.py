"""Growth benchmark: Storywatch and reader from 100 to 20,000 feeds.

The measured workers are those of ``bench/bench_peers.py`` (the real ``Poller`` from
``bootstrap.running_poller``; ``reader.update_feeds(workers=16)``), each run in a fresh
interpreter and data dir, against :mod:`bench.feedfarm` (50 items a feed, 10-200 KB)
in its own process. Per size and contender: first pass (every feed new), steady pass
(every feed answers 304) and, with ``--passes`` including it, the unchanged-body pass:
wall s, CPU s (process + descendants), CPU s per 1,000 feeds (flat = linear growth),
peak RSS of the process tree, new connections. Medians of ``--runs``.

Run: .venv/bin/python bench/bench_growth.py                       (about an hour)
     .venv/bin/python bench/bench_growth.py --sizes 100,1000 --runs 3
     .venv/bin/python bench/bench_growth.py --sizes 20000 --runs 1 --passes first,steady_304
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, med, run_worker, table
from bench.feedfarm import FarmSpec, FeedFarm

PEERS = Path(__file__).resolve().parent / "bench_peers.py"


def main() -> None:
    p = argparse.ArgumentParser(description="growth benchmark")
    p.add_argument("--sizes", default="100,1000,5000,20000")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--contenders", default="storywatch,reader")
    p.add_argument("--passes", default="first,steady_304")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    contenders = args.contenders.split(",")
    print(machine())
    print(f"passes {args.passes}; medians of {args.runs} runs; contenders interleaved",
          flush=True)
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n in sizes:
        with FeedFarm(FarmSpec(feeds=n)) as farm:
            for r in range(args.runs):
                for who in contenders:
                    t = time.perf_counter()
                    res = run_worker(PEERS, ["--worker", who, "--port", str(farm.port),
                                             "--feeds", str(n), "--passes", args.passes],
                                     timeout=7200)
                    results.setdefault((n, who), []).append(res)
                    line = "; ".join(
                        f"{k}: {v['wall']:.1f} s, {v['cpu']:.1f} CPU-s, "
                        f"{v['rss_tree']:.0f} MB, {int(v['stored'])} stored, "
                        f"{int(v['connections'])} conns, err={int(v['errors'])}"
                        for k, v in res.items())
                    print(f"  {n} feeds, run {r + 1} {who} ({time.perf_counter() - t:.0f} s):"
                          f" {line}", flush=True)
    rows = []
    for (n, who), runs in results.items():
        for name in args.passes.split(","):
            per = [run[name] for run in runs]
            cpu = med(per, "cpu")
            rows.append([f"{n:,}", who, name, med(per, "wall"), cpu, cpu * 1000 / n,
                         med(per, "rss_tree"), int(med(per, "stored")),
                         int(med(per, "connections")), int(med(per, "errors"))])
    print()
    print(table(["feeds", "contender", "pass", "wall s", "CPU s", "CPU s per 1,000 feeds",
                 "peak RSS MB (tree)", "items stored", "new connections", "errors"], rows))


if __name__ == "__main__":
    main()
