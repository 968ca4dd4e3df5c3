"""Where a first pass spends its time: stage by stage, in the real poller.

Runs the same first pass as ``bench_peers.py`` (the farm, ``bootstrap.running_poller``,
four storylines; its ``storywatch_worker``) in a fresh interpreter per run, with each
stage of a feed's way timed from the bot's side: the fetch, the parse pool (from
submitting a feed to getting its items back, queueing included), a parse slot (from
the parse to the commit, ``Poller._take_new``) and each hop to a thread
(``asyncio.to_thread``, by function). For each it prints the seconds during which at
least one feed was in that stage and how many were, on average, over the pass; and
for the pool, second by second, the share of the second with a feed in it.

What it is for: to tell which part sets the pace. A pool never empty while its
worker's CPU nearly equals the pass's wall time says the worker does; a pool often
empty says it waits for the bot. The wrappers add two timestamps to each of a few
thousand calls a pass; the pass's figures to quote are ``bench_peers.py``'s.

    .venv/bin/python bench/bench_stages.py --feeds 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine, median, run_worker, table
from bench.feedfarm import FarmSpec, FeedFarm

Event = tuple[float, str, int]


def _instrument(events: list[Event]) -> None:
    """Wrap the stages' coroutines so that each logs when a feed enters and leaves."""
    from bot import pipeline
    from bot.fetching import client

    def timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            events.append((time.perf_counter(), name, 1))
            try:
                return await fn(*args, **kwargs)
            finally:
                events.append((time.perf_counter(), name, -1))
        return wrapper

    client.FeedFetcher.fetch = timed("fetch", client.FeedFetcher.fetch)  # type: ignore[method-assign]
    pipeline.Poller._parse = timed("parse pool", pipeline.Poller._parse)  # type: ignore[method-assign]
    pipeline.Poller._take_new = timed("parse slot", pipeline.Poller._take_new)  # type: ignore[method-assign]
    to_thread = asyncio.to_thread

    async def hop(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "?")
        return await timed(f"thread: {name}", to_thread)(fn, *args, **kwargs)

    asyncio.to_thread = hop  # type: ignore[assignment]


def _summary(events: list[Event]) -> dict[str, Any]:
    """Per stage: seconds with a feed in it, mean feeds in it; the pool per second."""
    events.sort()
    start = min(t for t, name, _ in events if name == "fetch")
    span = max(t for t, _, _ in events) - start
    stages: dict[str, dict[str, float]] = {}
    for name in sorted({name for _, name, _ in events}):
        inside, last, busy, area = 0, start, 0.0, 0.0
        for t, n, step in events:
            if n != name:
                continue
            if inside:
                busy += t - last
            area += inside * (t - last)
            last, inside = t, inside + step
        stages[name] = {"busy": busy, "mean": area / span}
    seconds = [0.0] * (int(span) + 1)
    inside, last = 0, start
    for t, n, step in events:
        if n != "parse pool":
            continue
        a = last
        while inside and a < t:
            b = min(t, start + int(a - start) + 1)
            seconds[int(a - start)] += b - a
            a = b
        last, inside = t, inside + step
    return {"span": span, "stages": stages, "pool_per_second": seconds}


def worker(port: int, feeds: int) -> dict[str, Any]:
    from bench.bench_peers import storywatch_worker

    events: list[Event] = []
    _instrument(events)
    figures = asyncio.run(storywatch_worker(port, feeds, ["first"]))["first"]
    return {"pass": figures} | _summary(events)


def main() -> None:
    p = argparse.ArgumentParser(description="where a first pass spends its time")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.worker:
        emit(worker(args.port, args.feeds))
        return
    print(machine())
    spec = FarmSpec(feeds=args.feeds)
    print(f"feeds: {spec.feeds} x {spec.items} items; first pass; medians of {args.runs} "
          "runs, each in a fresh interpreter", flush=True)
    runs: list[dict[str, Any]] = []
    with FeedFarm(spec) as farm:
        for r in range(args.runs):
            res = run_worker(Path(__file__), ["--worker", "--port", str(farm.port),
                                              "--feeds", str(args.feeds)], timeout=3600)
            runs.append(res)
            f = res["pass"]
            print(f"  run {r + 1}: {f['wall']:.2f} s, bot {f['cpu'] - f['cpu_children']:.2f} "
                  f"CPU-s, parse worker {f['cpu_children']:.2f} CPU-s, {int(f['stored'])} "
                  f"stored, {int(f['errors'])} errors", flush=True)
            print("    pool in use, second by second: "
                  + " ".join(f"{x:.2f}" for x in res["pool_per_second"]), flush=True)

    def mid(get: Callable[[dict[str, Any]], float]) -> float:
        return median(get(run) for run in runs)

    print()
    print(f"pass wall {mid(lambda r: r['pass']['wall']):.2f} s; parse worker "
          f"{mid(lambda r: r['pass']['cpu_children']):.2f} CPU-s; bot "
          f"{mid(lambda r: r['pass']['cpu'] - r['pass']['cpu_children']):.2f} CPU-s")
    names = sorted({name for run in runs for name in run["stages"]})
    rows = [[name,
             mid(lambda r, n=name: r["stages"].get(n, {"busy": 0.0})["busy"]),
             mid(lambda r, n=name: r["stages"].get(n, {"busy": 0.0})["busy"] / r["span"]),
             mid(lambda r, n=name: r["stages"].get(n, {"mean": 0.0})["mean"])]
            for name in names]
    print(table(["stage", "s with a feed in it", "share of the pass", "feeds in it, mean"],
                rows))


if __name__ == "__main__":
    main()
