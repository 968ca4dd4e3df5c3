"""A steady pass of 304s alone, for one or several checkouts of Storywatch, alternately.

The 304 pass of ``bench_peers.py`` comes after a first pass of every feed, which takes
most of a run; comparing code versions on it alone needs no first pass. Each run stores
``--feeds`` feeds of a local farm (:mod:`bench.feedfarm`) as already polled (primed,
with the ETag the farm gives), then measures one ``poll_due``: every feed answers 304.
The poller is the real one (``bootstrap.running_poller``, as in ``bench_peers.py``), in
a fresh interpreter per run, imported from the checkout named by ``--trees``: this one
by default, or others, e.g. a commit extracted with
``git archive <commit> | tar -x -C /tmp/old`` (run in turn, ``--runs`` rounds).

Per run: wall s, CPU s of the process and its descendants, new connections to the farm
during the pass (counted as in ``bench_peers.py``: the bench's own query to read the
count is one of them; the pool's connections are fresh in each process, 16 at most).

Run: .venv/bin/python bench/bench_steady.py --feeds 1000 --runs 5
     .venv/bin/python bench/bench_steady.py --trees /tmp/old,/tmp/main,. --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


async def worker(port: int, feeds: int, tree: Path, passes: int = 1) -> dict[str, Any]:
    """Prime ``feeds`` feeds, then poll them ``passes`` times (each pass all 304s, a
    day apart, so every feed is due); the figures are the last pass's."""
    from bench._common import Meter, bench_settings
    from bench.bench_peers import farm_connections

    # The bench's helpers from here, the bot from the checkout measured.
    sys.path.insert(0, str(tree))
    from bot.bootstrap import running_poller
    from bot.models import Storyline
    from bot.storage.repository import Database

    with tempfile.TemporaryDirectory(prefix="sw-bench-steady-") as tmp:
        settings = bench_settings(Path(tmp), concurrency=16)
        db = Database.open(settings.database_path)
        start = datetime.now(UTC)
        base = f"http://127.0.0.1:{port}/v/"
        for i in range(feeds):
            db.add_feed(f"{base}{i}.xml", now=start)
        for k, title in enumerate(("Putin visit to Beijing", "Xi trade talks in Paris",
                                   "Flood in Delhi", "Ceasefire talks in Kyiv")):
            db.add_storyline(Storyline(0, title, "", slug=f"bench-{k}", shared=True), now=start)
        with db.transaction() as c:  # as after a first pass: the farm's ETag is '"farm-<i>-1"'
            c.execute("UPDATE feeds SET primed = 1, etag = '\"farm-' || "
                      "replace(replace(url, ?, ''), '.xml', '') || '-1\"'", (base,))
        async with running_poller(settings, db) as poller:
            for done in range(1, passes + 1):
                before = farm_connections(port)
                now = start + timedelta(days=done - 1, seconds=settings.env.poll_interval + 1)
                with Meter() as m:
                    report = await poller.poll_due(now)
            assert m.usage is not None
            unchanged = sum(1 for f in report.feeds if f.unchanged)
            out = {"wall": m.usage.wall, "cpu": m.usage.cpu, "unchanged": unchanged,
                   "connections": farm_connections(port) - before}
        db.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="a steady pass of 304s, per checkout")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--trees", default=".", help="checkouts, comma-separated (default: this)")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.worker:
        from bench._common import emit

        result = asyncio.run(worker(args.port, args.feeds, Path(args.trees).resolve()))
        import bot

        emit(result | {"bot": str(Path(bot.__file__).resolve().parents[1])})
        return
    sys.path.insert(0, str(HERE))
    from bench._common import machine, med, run_worker, table
    from bench.feedfarm import FarmSpec, FeedFarm

    trees = [Path(t).resolve() for t in args.trees.split(",")]
    print(machine())
    print(f"{args.feeds} feeds answering 304; trees {[str(t) for t in trees]}; "
          f"{args.runs} rounds, trees in turn", flush=True)
    results: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    with FeedFarm(FarmSpec(feeds=args.feeds)) as farm:
        for r in range(args.runs):
            for tree in trees:
                res = run_worker(Path(__file__), [
                    "--worker", "--port", str(farm.port), "--feeds", str(args.feeds),
                    "--trees", str(tree)], timeout=1800)
                results[tree].append(res)
                assert res["bot"] == str(tree), f"bot imported from {res['bot']}, not {tree}"
                print(f"  round {r + 1} {tree}: {res['wall']:.2f} s, {res['cpu']:.2f} CPU-s, "
                      f"{res['unchanged']} unchanged, {res['connections']} new connections",
                      flush=True)
    rows = [[str(t), med(runs, "wall"), med(runs, "cpu"), int(med(runs, "connections")),
             " / ".join(f"{x['cpu']:.2f}" for x in runs)] for t, runs in results.items()]
    print()
    print(table(["tree", "wall s", "CPU s", "new connections", "CPU s per run"], rows))


if __name__ == "__main__":
    main()
