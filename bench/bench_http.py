"""The fetch stack alone: Storywatch's guarded httpx fetcher against plain aiohttp.

Both fetch the same ``--feeds`` farm feeds (:mod:`bench.feedfarm`, no slow feeds), 16
at a time over keep-alive connections, in a fresh interpreter each: once with no
validators (every answer a 200 with its 10-200 KB body, read whole) and once with the
farm's ETag (every answer a 304). Figures: CPU seconds of the process, wall seconds,
new connections at the farm; medians of ``--runs``.

* **storywatch** - ``FeedFetcher.fetch`` as the poller uses it: the SSRF guard's
  resolver and address checks on every connection, redirects followed by hand, the
  decoded-size cap, the deadline, the per-host and global slots;
* **aiohttp** - ``aiohttp.ClientSession`` with a ``TCPConnector(limit=16)`` and a
  semaphore: no guard, no caps (what a rebuild would start from).

Run: .venv/bin/python bench/bench_http.py        (aiohttp from the ``bench`` extra)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine, med, run_worker, table
from bench.bench_peers import farm_connections
from bench.feedfarm import LAST_MODIFIED, FarmSpec, FeedFarm

CONCURRENCY = 16


async def storywatch(port: int, feeds: int, conditional: bool) -> int:
    from bot.fetching.client import FeedFetcher
    from bot.models import FeedState
    from bot.settings import FetchOptions

    options = FetchOptions(concurrency=CONCURRENCY, per_host=CONCURRENCY)
    async with FeedFetcher(options, allow_private_networks=True) as fetcher:
        async def one(i: int) -> int:
            state = FeedState(etag=f'"farm-{i}-1"', last_modified=LAST_MODIFIED) \
                if conditional else FeedState()
            path = "v" if conditional else "n"
            result = await fetcher.fetch(f"http://127.0.0.1:{port}/{path}/{i}.xml", state)
            return len(result.body)

        sizes = await asyncio.gather(*(one(i) for i in range(feeds)))
    return sum(sizes)


async def aiohttp_client(port: int, feeds: int, conditional: bool) -> int:
    import aiohttp

    gate = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int) -> int:
            headers = {"If-None-Match": f'"farm-{i}-1"'} if conditional else {}
            path = "v" if conditional else "n"
            async with gate, session.get(f"http://127.0.0.1:{port}/{path}/{i}.xml",
                                         headers=headers) as r:
                return len(await r.read())

        sizes = await asyncio.gather(*(one(i) for i in range(feeds)))
    return sum(sizes)


def worker(who: str, port: int, feeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fn = storywatch if who == "storywatch" else aiohttp_client
    for name, conditional in (("200", False), ("304", True)):
        before = farm_connections(port)
        t, c = time.perf_counter(), time.process_time()
        size = asyncio.run(fn(port, feeds, conditional))
        out[name] = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                     "bytes": size, "connections": farm_connections(port) - before}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="httpx (guarded) vs aiohttp")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worker", choices=["storywatch", "aiohttp"])
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.worker:
        emit(worker(args.worker, args.port, args.feeds))
        return
    print(machine())
    results: dict[str, list[dict[str, Any]]] = {"storywatch": [], "aiohttp": []}
    with FeedFarm(FarmSpec(feeds=args.feeds, slow_every=0)) as farm:
        for _ in range(args.runs):
            for who in results:
                results[who].append(run_worker(Path(__file__), [
                    "--worker", who, "--port", str(farm.port), "--feeds", str(args.feeds)],
                    timeout=1800))
    rows = []
    for answer in ("200", "304"):
        for who, runs in results.items():
            per = [r[answer] for r in runs]
            rows.append([f"{args.feeds:,} x {answer}", who, med(per, "cpu"), med(per, "wall"),
                         int(med(per, "connections")),
                         " / ".join(f"{x['cpu']:.2f}" for x in per)])
    print(table(["answers", "client", "CPU s", "wall s", "new connections", "CPU s per run"],
                rows))


if __name__ == "__main__":
    main()
