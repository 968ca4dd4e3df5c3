"""Poll benchmark: 1,000 feeds x 50 items, Storywatch side by side with a naive bot.

The feeds come from :mod:`bench.feedfarm` (10-200 KB each, one in 100 answering after a
1 s delay) in a separate process, so the farm's CPU is never counted as the bot's.
Each contender runs in a fresh interpreter per run (clean heap, its own peak RSS):

* **storywatch** - the real ``Poller`` from ``bootstrap.running_poller`` (shared httpx
  client, forkserver parse pool, SQLite in a temp data dir, private networks allowed),
  feeds added to the ``Database`` directly. Three passes: *first* (every feed 200 and
  new), *steady 304* (ETag / Last-Modified answered 304), *steady unchanged* (the same
  feeds served with no validators: 200 with the same body, recognised by hash);
* **naive** - what simple bots do: ``feedparser.parse(url)`` of every feed in turn
  (feedparser fetches the URL itself, no validators) and a set of seen entry ids.
  Its "steady state" is simply the same loop again.

Figures per pass: wall seconds, CPU seconds of the process plus its descendants (the
parse pool), peak RSS (process; largest child; process + all children). Medians of
``--runs`` runs (default 3), contenders interleaved.

Run: .venv/bin/python bench/bench_poll.py            (about 10 minutes on 2 cores)
     .venv/bin/python bench/bench_poll.py --feeds 200 --runs 1   (a quick look)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Meter, Usage, bench_settings, emit, machine, med, run_worker, table
from bench.feedfarm import FarmSpec, FeedFarm

TARGET_STEADY_CPU = 5.0  # CPU seconds per steady-state pass of 1,000 feeds
TARGET_FIRST_WALL = 60.0  # seconds for the first pass of 1,000 feeds on 2 cores
TARGET_RSS_MB = 250.0
PASSES = ("first", "steady_304", "steady_unchanged")


def _usage(u: Usage | None) -> dict[str, float]:
    assert u is not None
    return {
        "wall": u.wall, "cpu": u.cpu, "cpu_self": u.cpu_self, "cpu_children": u.cpu_children,
        "rss_self": u.rss_self_mb, "rss_child": u.rss_children_mb, "rss_tree": u.rss_tree_mb,
    }


# --- workers (each in its own interpreter) -------------------------------------------


async def storywatch_worker(port: int, feeds: int) -> dict[str, Any]:
    """Three poll passes with the real Poller; returns the figures of each."""
    from bot.bootstrap import running_poller
    from bot.models import Storyline
    from bot.storage.repository import Database

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sw-bench-poll-") as tmp:
        settings = bench_settings(Path(tmp))
        db = Database.open(settings.database_path)
        start = datetime.now(UTC)
        for i in range(feeds):
            db.add_feed(f"http://127.0.0.1:{port}/v/{i}.xml", now=start)
        for k, title in enumerate(("Putin visit to Beijing", "Xi trade talks in Paris",
                                   "Flood in Delhi", "Ceasefire talks in Kyiv")):
            db.add_storyline(Storyline(0, title, "", slug=f"bench-{k}", shared=True), now=start)
        interval = settings.env.poll_interval
        async with running_poller(settings, db) as poller:
            for n, name in enumerate(PASSES):
                if name == "steady_unchanged":
                    # Same bodies, no validators: the farm's /n/ paths; forget the ETags.
                    with db.transaction() as c:
                        c.execute("UPDATE feeds SET url = replace(url, '/v/', '/n/'), "
                                  "etag = NULL, last_modified = NULL")
                now = start + timedelta(seconds=(interval + 1) * n)
                with Meter() as m:
                    report = await poller.poll_due(now)
                out[name] = _usage(m.usage) | {
                    "polled": len(report.feeds), "errors": report.errors,
                    "new_items": report.new_items,
                    "unchanged": sum(1 for f in report.feeds if f.unchanged),
                }
                if report.errors:
                    out[name]["first_error"] = next(
                        f.error for f in report.feeds if f.error is not None)
        db.close()
    return out


def naive_worker(port: int, feeds: int) -> dict[str, Any]:
    """The naive bot: feedparser.parse(url) of every feed, twice."""
    import feedparser  # type: ignore[import-untyped,unused-ignore]

    seen: set[str] = set()
    out: dict[str, Any] = {}
    for name in ("first", "steady_304"):
        new = errors = 0
        with Meter() as m:
            for i in range(feeds):
                d = feedparser.parse(f"http://127.0.0.1:{port}/v/{i}.xml")
                if d.get("status") != 200:
                    errors += 1
                for e in d.entries:
                    key = e.get("id") or e.get("link") or e.get("title", "")
                    if key not in seen:
                        seen.add(key)
                        new += 1
        out[name] = _usage(m.usage) | {"polled": feeds, "errors": errors, "new_items": new}
    out["steady_unchanged"] = out["steady_304"]  # without validators it is the same loop
    return out


# --- driver --------------------------------------------------------------------------


def measure(farm: FeedFarm, feeds: int, runs: int, contenders: list[str]) -> dict[str, list[Any]]:
    """Run every contender ``runs`` times against ``farm``; print each run as it ends."""
    results: dict[str, list[Any]] = {c: [] for c in contenders}
    for r in range(runs):
        for who in contenders:
            t = time.perf_counter()
            res = run_worker(Path(__file__), ["--worker", who, "--port", str(farm.port),
                                              "--feeds", str(feeds)], timeout=1800)
            results[who].append(res)
            line = ", ".join(
                f"{p}: {res[p]['wall']:.1f}s wall {res[p]['cpu']:.1f} CPU-s "
                f"{res[p]['rss_tree']:.0f} MB err={res[p]['errors']}" for p in PASSES)
            print(f"  run {r + 1} {who:10s} ({time.perf_counter() - t:.0f}s): {line}", flush=True)
    return results


def pass_table(results: dict[str, list[Any]], feeds: int) -> str:
    rows = []
    for who, runs in results.items():
        for p in PASSES:
            if who == "naive" and p == "steady_unchanged":
                continue
            label = "steady (same loop)" if who == "naive" and p != "first" else p
            per = [r[p] for r in runs]
            rows.append([
                who, label, med(per, "wall"), med(per, "cpu"), med(per, "cpu_children"),
                med(per, "rss_self"), med(per, "rss_child"), med(per, "rss_tree"),
                int(med(per, "errors")),
            ])
    return table(["bot", "pass", "wall s", "CPU s", "of which pool", "peak RSS MB (proc)",
                  "largest child MB", "proc + children MB", "errors"], rows)


def ratio_table(results: dict[str, list[Any]]) -> str:
    sw, nv = results["storywatch"], results["naive"]
    rows = []
    for p in PASSES:
        np_ = "first" if p == "first" else "steady_304"
        for key, label in (("wall", "wall"), ("cpu", "CPU")):
            a = med([r[p] for r in sw], key)
            b = med([r[np_] for r in nv], key)
            rows.append([p, label, a, b, f"{b / a:.1f}x" if a else "-"])
    return table(["pass", "figure", "storywatch", "naive", "naive / storywatch"], rows)


def targets(results: dict[str, list[Any]], feeds: int) -> str:
    sw = results["storywatch"]
    scale = 1000 / feeds
    first_wall = med([r["first"] for r in sw], "wall") * scale
    steady = max(med([r[p] for r in sw], "cpu") for p in PASSES[1:]) * scale
    rss = max(med([r[p] for r in sw], "rss_tree") for p in PASSES)
    rows = [
        ["first pass wall (per 1,000 feeds)", f"<= {TARGET_FIRST_WALL:.0f} s",
         f"{first_wall:.1f} s", "met" if first_wall <= TARGET_FIRST_WALL else "MISSED"],
        ["steady-state CPU (worse of 304 / unchanged, per 1,000)",
         f"<= {TARGET_STEADY_CPU:.0f} CPU-s", f"{steady:.2f} CPU-s",
         "met" if steady <= TARGET_STEADY_CPU else "MISSED"],
        ["peak RSS, process + all children", f"<= {TARGET_RSS_MB:.0f} MB", f"{rss:.0f} MB",
         "met" if rss <= TARGET_RSS_MB else "MISSED"],
    ]
    return table(["target", "goal", "measured (median)", ""], rows)


def main() -> None:
    p = argparse.ArgumentParser(description="poll benchmark")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--contenders", default="storywatch,naive")
    p.add_argument("--worker", choices=["storywatch", "naive"])
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.worker == "storywatch":
        emit(asyncio.run(storywatch_worker(args.port, args.feeds)))
        return
    if args.worker == "naive":
        emit(naive_worker(args.port, args.feeds))
        return
    contenders = args.contenders.split(",")
    print(machine())
    spec = FarmSpec(feeds=args.feeds)
    print(f"feeds: {spec.feeds} x {spec.items} items, {spec.min_kb}-{spec.max_kb} KB, "
          f"every {spec.slow_every}th answers after {spec.slow_delay:g} s; "
          f"medians of {args.runs} runs", flush=True)
    with FeedFarm(spec) as farm:
        results = measure(farm, args.feeds, args.runs, contenders)
        print(f"farm served: {farm.stats()}")
    print()
    print(pass_table(results, args.feeds))
    if "naive" in results and "storywatch" in results:
        print()
        print(ratio_table(results))
    if "storywatch" in results:
        print()
        print(targets(results, args.feeds))


if __name__ == "__main__":
    main()
