"""Titles typed in lower case: how much a storyline loses when its user types no capitals.

People type ``/track putin trip to china`` on a phone. This bench runs the FORMAT.md
protocol (``bot.evaluation.evaluate``) on every shared benchmark twice, with its
titles as written and all in lower case, each both from a cold matcher (the protocol's
own start: the matcher has seen nothing) and from a warm one, that has first read the
items of the *other* benchmark files as background news (their times moved to the 60
days before the file's first item; no label is read). A deployed bot is warm: it has
read the feeds for weeks, so it knows which words the news writes as names.

    .venv/bin/python bench/bench_casing.py [FILES...]

Prints one row per file and start: F1 / P / R as written and in lower case.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.evaluation import Benchmark, EvalResult, evaluate, load_benchmark
from bot.models import Item
from bot.storylines.matcher import Matcher

BENCH_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
BACKGROUND_DAYS = 60
BATCH = 200


def lower_titles(bench: Benchmark) -> Benchmark:
    return replace(bench, storylines=tuple(replace(s, title=s.title.lower())
                                           for s in bench.storylines))


def background(bench: Benchmark, others: Sequence[Benchmark]) -> list[Item]:
    """The other files' items, spread evenly over the days before ``bench`` starts."""
    items = [b.item for o in others if o.name != bench.name for b in o.items]
    start = bench.items[0].item.published
    if start is None or not items:
        return []
    step = timedelta(days=BACKGROUND_DAYS) / len(items)
    first = start - timedelta(days=BACKGROUND_DAYS)
    return [replace(it, key=f"bg-{n}-{it.key}", published=first + n * step)
            for n, it in enumerate(items)]


def warmed(items: Sequence[Item]) -> Callable[[], Matcher]:
    def factory() -> Matcher:
        matcher = Matcher()
        for i in range(0, len(items), BATCH):
            matcher.observe(items[i:i + BATCH])
        return matcher
    return factory


def cell(r: EvalResult) -> str:
    return f"{r.f1:.3f} / {r.precision:.3f} / {r.recall:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    files = args.files or sorted(BENCH_DIR.glob("*.json"))
    if not files:
        print(f"no benchmark files (looked in {BENCH_DIR})")
        return 1
    benches = [load_benchmark(f) for f in files]
    print("| file | start | as written: F1 / P / R | lower case: F1 / P / R | ΔF1 |")
    print("| --- | --- | --- | --- | --- |")
    for bench in benches:
        for start, factory in (("cold", Matcher),
                               ("warm", warmed(background(bench, benches)))):
            written = evaluate(bench, factory)
            lower = evaluate(lower_titles(bench), factory)
            print(f"| {bench.name} | {start} | {cell(written)} | {cell(lower)} "
                  f"| {lower.f1 - written.f1:+.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
