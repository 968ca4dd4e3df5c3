"""The user replay: a benchmark served as live outlet feeds to the real bot; per-chat figures.

Runs :func:`tests.e2e.replay.replay` (the same harness as ``tests/e2e/test_replay.py``):
``storywatch run`` against the fake Bot API and three local RSS feeds on 127.0.0.1, four
private chats that ``/track`` four of the benchmark's storylines before the stream starts
(two by replying to the seed article they share), the items released in time order on a
compressed clock that moves one step per poll pass. Prints, per chat, the alerts received
and their precision and recall against the gold labels. Nothing here asserts: the test
holds the floors.

Run: .venv/bin/python bench/bench_replay.py [--bench FILE] [--steps 20] [--semantic]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine
from tests.conftest import TOKEN
from tests.e2e.replay import VISITS, replay
from tests.support.fake_telegram import FakeTelegram


def main() -> int:
    p = argparse.ArgumentParser(description="per-chat precision and recall of a live replay")
    p.add_argument("--bench", type=Path, default=VISITS, help="a benchmark JSON file")
    p.add_argument("--steps", type=int, default=20,
                   help="steps (one poll pass each) the benchmark's time span is cut into")
    p.add_argument("--semantic", action="store_true", help="with the MiniLM extra")
    args = p.parse_args()
    if not args.bench.exists():
        print(f"benchmark not found: {args.bench} (../shared beside the checkout)")
        return 2
    print(machine())
    with tempfile.TemporaryDirectory(prefix="sw-bench-replay-") as tmp, \
            FakeTelegram(TOKEN) as fake:
        result = replay(args.bench, Path(tmp), fake, steps=args.steps,
                        semantic=args.semantic, progress=print)
    print(f"\nmatcher: {'words + MiniLM' if args.semantic else 'words'}; {result.describe()}\n")
    print(result.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
