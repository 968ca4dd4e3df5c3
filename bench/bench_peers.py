"""Side by side: Storywatch, lemon24's ``reader`` and the naive ``feedparser.parse(url)`` loop.

All three poll the same local farm (:mod:`bench.feedfarm`, 50 items a feed, ETag and
Last-Modified on ``/v/``, the same bodies without validators on ``/n/``), each run in
a fresh interpreter, contenders interleaved run by run, medians of ``--runs``.

* **storywatch** - the real ``Poller`` from ``bootstrap.running_poller`` (as in
  ``bench_poll.py``; the words matcher, the parse pool, SQLite in a temp dir);
* **reader** - ``reader.make_reader`` on a temp SQLite file, ``update_feeds(workers=16)``
  (reader's own conditional GET and SQLite storage; ``scheduled=False``: every feed,
  not only those its schedule says are due); the unchanged pass moves every feed
  to its ``/n/`` URL with ``change_feed_url``, as Storywatch's moves to ``/n/``;
* **naive** - ``feedparser.parse(url)`` of every feed in turn and a set of seen ids
  (first pass only: its steady state is the same loop again).

Per pass: wall s, CPU s of the process and all its descendants, peak RSS of the whole
tree (the sum of each process's peak, an upper bound), items stored after the pass, and
the new TCP connections the farm accepted during the pass.

Run: .venv/bin/python bench/bench_peers.py --feeds 1000 --runs 3
     .venv/bin/python bench/bench_peers.py --feeds 5000 --runs 1
     .venv/bin/python bench/bench_peers.py --feeds 100 --runs 1 --passes first,steady_304
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Meter, Usage, bench_settings, emit, machine, med, run_worker, table
from bench.feedfarm import FarmSpec, FeedFarm

ALL_PASSES = ("first", "steady_304", "steady_unchanged")
CONCURRENCY = 16


def farm_connections(port: int) -> int:
    """Connections the farm has accepted so far (this query's own one excluded)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/stats", timeout=30) as r:
        return int(json.loads(r.read())["connections"]) - 1


def _figures(u: Usage | None, port: int, before: int, stored: int) -> dict[str, float]:
    assert u is not None
    return {
        "wall": u.wall, "cpu": u.cpu, "cpu_children": u.cpu_children,
        "rss_self": u.rss_self_mb, "rss_tree": u.rss_tree_mb, "stored": stored,
        "connections": farm_connections(port) - before,
    }


# --- workers (each in its own interpreter) -------------------------------------------


async def storywatch_worker(port: int, feeds: int, passes: list[str]) -> dict[str, Any]:
    from bot.bootstrap import running_poller
    from bot.models import Storyline
    from bot.storage.repository import Database

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sw-bench-peers-") as tmp:
        settings = bench_settings(Path(tmp), concurrency=CONCURRENCY)
        db = Database.open(settings.database_path)
        start = datetime.now(UTC)
        for i in range(feeds):
            db.add_feed(f"http://127.0.0.1:{port}/v/{i}.xml", now=start)
        for k, title in enumerate(("Putin visit to Beijing", "Xi trade talks in Paris",
                                   "Flood in Delhi", "Ceasefire talks in Kyiv")):
            db.add_storyline(Storyline(0, title, "", slug=f"bench-{k}", shared=True), now=start)
        interval = settings.env.poll_interval
        async with running_poller(settings, db) as poller:
            for n, name in enumerate(passes):
                if name == "steady_unchanged":
                    with db.transaction() as c:
                        c.execute("UPDATE feeds SET url = replace(url, '/v/', '/n/'), "
                                  "etag = NULL, last_modified = NULL")
                now = start + timedelta(seconds=(interval + 1) * (n + 1))
                before = farm_connections(port)
                with Meter() as m:
                    report = await poller.poll_due(now)
                stored = int(db._query("SELECT COUNT(*) FROM items")[0][0])
                out[name] = _figures(m.usage, port, before, stored) | {"errors": report.errors}
        db.close()
    return out


def reader_worker(port: int, feeds: int, passes: list[str]) -> dict[str, Any]:
    from reader import make_reader

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reader-bench-peers-") as tmp:
        reader = make_reader(str(Path(tmp) / "reader.sqlite"))
        for i in range(feeds):
            reader.add_feed(f"http://127.0.0.1:{port}/v/{i}.xml")
        for name in passes:
            if name == "steady_unchanged":
                for i in range(feeds):
                    reader.change_feed_url(f"http://127.0.0.1:{port}/v/{i}.xml",
                                           f"http://127.0.0.1:{port}/n/{i}.xml")
            before = farm_connections(port)
            errors = 0
            with Meter() as m:
                for result in reader.update_feeds_iter(workers=CONCURRENCY, scheduled=False):
                    if isinstance(result.value, Exception):
                        errors += 1
            stored = reader.get_entry_counts().total or 0
            out[name] = _figures(m.usage, port, before, stored) | {"errors": errors}
        reader.close()
    return out


def naive_worker(port: int, feeds: int, passes: list[str]) -> dict[str, Any]:
    import feedparser  # type: ignore[import-untyped,unused-ignore]

    seen: set[str] = set()
    errors = 0
    before = farm_connections(port)
    with Meter() as m:
        for i in range(feeds):
            d = feedparser.parse(f"http://127.0.0.1:{port}/v/{i}.xml")
            if d.get("status") != 200:
                errors += 1
            for e in d.entries:
                seen.add(f"{i}:{e.get('id') or e.get('link') or e.get('title', '')}")
    return {"first": _figures(m.usage, port, before, len(seen)) | {"errors": errors}}


# --- driver --------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description="Storywatch vs reader vs the naive loop")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--contenders", default="storywatch,reader,naive")
    p.add_argument("--passes", default=",".join(ALL_PASSES))
    p.add_argument("--worker", choices=["storywatch", "reader", "naive"])
    p.add_argument("--port", type=int)
    args = p.parse_args()
    passes = args.passes.split(",")
    if args.worker == "storywatch":
        emit(asyncio.run(storywatch_worker(args.port, args.feeds, passes)))
        return
    if args.worker == "reader":
        emit(reader_worker(args.port, args.feeds, passes))
        return
    if args.worker == "naive":
        emit(naive_worker(args.port, args.feeds, passes))
        return
    contenders = args.contenders.split(",")
    print(machine())
    spec = FarmSpec(feeds=args.feeds)
    print(f"feeds: {spec.feeds} x {spec.items} items, {spec.min_kb}-{spec.max_kb} KB, every "
          f"{spec.slow_every}th answers after {spec.slow_delay:g} s; passes {passes}; "
          f"medians of {args.runs} runs, contenders interleaved", flush=True)
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    with FeedFarm(spec) as farm:
        for r in range(args.runs):
            for who in contenders:
                t = time.perf_counter()
                res = run_worker(Path(__file__), [
                    "--worker", who, "--port", str(farm.port), "--feeds", str(args.feeds),
                    "--passes", ",".join(passes)], timeout=7200)
                results[who].append(res)
                line = "; ".join(
                    f"{k}: {v['wall']:.1f} s, {v['cpu']:.1f} CPU-s, {v['rss_tree']:.0f} MB, "
                    f"{int(v['stored'])} stored, {int(v['connections'])} conns, "
                    f"err={int(v['errors'])}" for k, v in res.items())
                print(f"  run {r + 1} {who} ({time.perf_counter() - t:.0f} s): {line}",
                      flush=True)
    rows = []
    for name in passes:
        for who, runs in results.items():
            per = [run[name] for run in runs if name in run]
            if not per:
                continue
            rows.append([
                name, who, med(per, "wall"), med(per, "cpu"), med(per, "cpu_children"),
                med(per, "rss_self"), med(per, "rss_tree"), int(med(per, "stored")),
                int(med(per, "connections")), int(med(per, "errors")),
                " / ".join(f"{x['wall']:.1f}" for x in per),
            ])
    print()
    print(table(["pass", "contender", "wall s", "CPU s", "of which children", "peak RSS MB "
                 "(proc)", "peak RSS MB (tree)", "items stored", "new connections", "errors",
                 "wall s per run"], rows))
    if "storywatch" in results and "reader" in results:
        ratio = []
        for name in passes:
            sw = [run[name] for run in results["storywatch"]]
            rd = [run[name] for run in results["reader"]]
            ratio.append([name] + [
                f"{med(sw, k):.2f} / {med(rd, k):.2f} = {med(sw, k) / med(rd, k):.2f}"
                if med(rd, k) else "-" for k in ("wall", "cpu", "rss_tree")])
        print()
        print(table(["pass", "wall: storywatch / reader", "CPU", "peak RSS (tree)"], ratio))


if __name__ == "__main__":
    main()
