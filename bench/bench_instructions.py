"""Instructions the bot's process executes for one steady pass of 304s, per checkout.

CPU seconds on this shared machine move by a third between runs of the same code (the
host's speed varies within the hour), which hides a change of a tenth. Valgrind's
callgrind counts the instructions a process executes instead: unmoved by whatever else
the machine runs, and much steadier than CPU time, though not exact (asyncio's
scheduling still follows the clock). It is also 50-100 times slower,
so this bench runs the real poller of ``bench_steady.py`` (primed feeds of a local
farm, every answer a 304) under callgrind twice per checkout, for one pass and for
three, and reports half the difference: one pass, without start-up and set-up.

Counted: the bot's process, all its threads (the SQLite writes run in a thread). Not
counted: the farm (its own process) and the parse worker (idle in a pass of 304s).

Run: .venv/bin/python bench/bench_instructions.py --trees /tmp/old,.   (needs valgrind)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO as HERE
from bench._common import callgrind, machine, table
from bench.feedfarm import FarmSpec, FeedFarm

CHILD = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {here!r})
from bench.bench_steady import worker
result = asyncio.run(worker({port}, {feeds}, Path({tree!r}), passes={passes}))
assert result["unchanged"] == {feeds}, result
import bot
assert str(Path(bot.__file__).resolve()).startswith({tree!r}), bot.__file__
"""


def instructions(tree: Path, port: int, feeds: int, passes: int) -> int:
    """Instructions callgrind counted in one run of ``passes`` passes."""
    code = CHILD.format(here=str(HERE), port=port, feeds=feeds, tree=str(tree), passes=passes)
    return callgrind(["-c", code], tree)[0]


def main() -> None:
    p = argparse.ArgumentParser(description="instructions per steady pass of 304s")
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--trees", default=".", help="checkouts, comma-separated (default: this)")
    args = p.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    print(machine())
    print(f"{args.feeds} feeds answering 304; instructions of one pass = (3 passes - 1 pass) / 2",
          flush=True)
    rows = []
    with FeedFarm(FarmSpec(feeds=args.feeds)) as farm:
        for tree in trees:
            one = instructions(tree, farm.port, args.feeds, 1)
            three = instructions(tree, farm.port, args.feeds, 3)
            per_pass = (three - one) / 2
            print(f"  {tree}: {one:,} (1 pass), {three:,} (3 passes)", flush=True)
            rows.append([str(tree), f"{per_pass / 1e6:,.0f}",
                         f"{per_pass / args.feeds / 1e3:,.0f}"])
    print()
    print(table(["tree", "M instructions per pass", "k instructions per feed"], rows))


if __name__ == "__main__":
    main()
