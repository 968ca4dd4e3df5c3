"""Matcher throughput: items/s against 10, 100 and 1,000 storylines (one core, no network).

Synthetic but news-shaped data: storylines built from random names, places and
topic words (with a seed sentence), items as headline + summary mixing the same
vocabulary with filler. Each figure is the median of 5 runs of matching a
2,000-item stream in batches of 200, after a warm-up batch, per second of wall time
and per CPU-second of the process: once with the matcher reading each item (as the
evaluation does), once with the items' facts read beforehand (as the parse worker hands
them to the bot, which reads their tokens itself: the figure is the bot's own process's
work).

Run: .venv/bin/python bench/bench_match.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.models import Item, Storyline
from bot.storylines.matcher import Matcher
from bot.storylines.reading import with_facts

RNG = random.Random(20231017)
SYL = ["ka", "lo", "mi", "ra", "te", "vo", "shi", "an", "ber", "gu", "dan", "zo", "pel", "ri"]
FILLER = str.split(
    "officials said the plan would go ahead after talks with leaders on the new deal while "
    "critics warned of delays and rising costs as markets reacted to the latest figures"
)
TOPICS = str.split(
    "election summit visit trade war ceasefire flood earthquake merger trial strike protest "
    "sanctions vaccine outbreak budget tariff rally verdict launch recall"
)


def _name() -> str:
    return "".join(RNG.choice(SYL) for _ in range(RNG.randint(2, 3))).capitalize()


PEOPLE = [f"{_name()} {_name()}" for _ in range(800)]
PLACES = [_name() for _ in range(400)]


def storylines(n: int) -> list[Storyline]:
    out = []
    for i in range(n):
        person, place, topic = RNG.choice(PEOPLE), RNG.choice(PLACES), RNG.choice(TOPICS)
        seed = f"{person} arrives in {place} for the {topic}. Officials in {place} expect talks."
        out.append(Storyline(i + 1, f"{person} {topic} in {place}", seed))
    return out


def items(n: int, start: datetime) -> list[Item]:
    out = []
    for i in range(n):
        words = RNG.sample(FILLER, 8)
        words.insert(0, RNG.choice(PEOPLE))
        words.insert(4, RNG.choice(PLACES))
        words.insert(6, RNG.choice(TOPICS))
        title = " ".join(words[:9])
        summary = " ".join(words[9:] + RNG.sample(FILLER, 10))
        out.append(Item(f"i{i}", title, summary, None, start + timedelta(minutes=i), "bench"))
    return out


def run(
    n_storylines: int, n_items: int = 2000, batch: int = 200, *, read: bool = False
) -> tuple[float, float]:
    """Items per second of wall time and per CPU-second of this process. With ``read``,
    the items come with their facts read, as the parse worker hands them to the bot:
    the figure is then the bot's own process's work."""
    sls = storylines(n_storylines)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    m = Matcher()
    m.match(items(batch, t0), sls)  # warm-up: profiles, index, caches
    stream = items(n_items, t0 + timedelta(days=1))
    if read:
        stream = [with_facts(i) for i in stream]
    start, cpu = time.perf_counter(), time.process_time()
    for k in range(0, n_items, batch):
        m.match(stream[k : k + batch], sls)
    return n_items / (time.perf_counter() - start), n_items / (time.process_time() - cpu)


def main() -> None:
    # The CPU figure is what other work on the machine changes least.
    for read, what in ((False, "reading included"),
                       (True, "items' facts read in the parse worker")):
        print(what)
        for n in (10, 100, 1000):
            rates = [run(n, read=read) for _ in range(5)]
            wall = [w for w, _ in rates]
            cpu = [c for _, c in rates]
            print(f"{n:5d} storylines: {statistics.median(wall):8.0f} items/s, "
                  f"{statistics.median(cpu):8.0f} items/CPU-s "
                  f"(wall runs: {', '.join(f'{r:.0f}' for r in wall)})")


if __name__ == "__main__":
    main()
