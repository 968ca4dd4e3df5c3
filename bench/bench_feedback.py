"""Feedback that teaches: a simulated user replays each shared benchmark.

For each benchmark file (shared/benchmarks/*.json, FORMAT.md), items are fed to the
default word matcher one at a time in time order, as in ``storywatch eval``. Per
storyline, its scored items are split in time: the first 30% (by count) are the
"teaching" part, the remaining 70% are measured.

- ``none``: no feedback at all (the matcher as shipped).
- ``user``: during the teaching part, every alert gets a press: 👎 on each false
  alarm, 👍 on each hit (the gold labels stand for the user's judgement).
- ``random``: the opposite user, pressing 👎 on 10% of all alerts at random,
  whatever they are, for the whole stream (three seeds; the median is shown).

Micro F1 / precision / recall on the measured 70% only, for every file. Figures go
in docs/matching.md ("Feedback"), with this command:

    .venv/bin/python bench/bench_feedback.py [--grid] [FILES...]

``--grid`` also prints 40 FeedbackConfig settings on every file given (how the
defaults were chosen; several minutes on the five non-uci files).

``--why`` prints, per file, what any per-storyline feedback could reach at best and
whether the presses carry a signal at all: the false alarms (misses) measured on
storylines that got a 👎 (👍) while teaching, how many false alarms are on items no
storyline of the file claims (the labels' blind spot), the F1 if every such false alarm were
removed, and the AUC with which three resemblances to the judged items tell the
measured false alarms of those storylines from their hits (0.5: no signal; 1: a
perfect separation). The resemblances, each computed when the item arrives, with the
matcher's IDF and without the storyline's own words: (a) nearest 👎 minus nearest 👍
(what ``adjust_score`` uses), (b) the summed log-odds of the item's words in 👎 vs 👍
items (which words are off story), (c) the score against the highest 👎 score (the
bar); beside each AUC, the most F1 any one cutoff on it could gain on that file, the
cutoff chosen with the answers (a bound, not a result). And for misses (what a 👍
could bring back): (d) the AUC with which the resemblance to the nearest 👍 tells the
misses of 👍-taught storylines from their other unalerted items, and how many misses
are among the same number of unalerted items let through, the nearest to a 👍 first
(the rest would be new false alarms), with the most F1 any cutoff on that resemblance
could gain.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bot.evaluation import Benchmark, build_storyline, first_scored, load_benchmark
from bot.models import Storyline
from bot.storylines.feedback import (
    DEFAULT_FEEDBACK,
    Example,
    FeedbackConfig,
    Steering,
    core_words,
    similarity,
    words,
)
from bot.storylines.matcher import Assessment, Matcher

BENCH_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
TEACH_SHARE = 0.30
RANDOM_SHARE = 0.10
SEEDS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class Figures:
    tp: int
    fp: int
    fn: int
    ups: int = 0  # presses during the replay
    downs: int = 0
    fp_taught: int = 0  # measured false alarms of storylines that got a 👎 while teaching

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    def cell(self) -> str:
        return f"{self.f1:.3f} / {self.precision:.3f} / {self.recall:.3f}"


Presser = Callable[[int, bool, bool, bool], str | None]
"""(storyline id, matched, on story, in the teaching part) -> "up", "down" or None."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One (item, storyline) verdict of the replay, as the simulated user sees it."""

    a: Assessment
    gold: bool
    teaching: bool
    text: str


def stream(bench: Benchmark, matcher: Matcher) -> Iterator[Seen]:
    """Every verdict of ``matcher`` on ``bench``, one item at a time in time order
    (as ``storywatch eval``); the consumer may teach the matcher between verdicts."""
    items_by_id = {b.item.key: b.item for b in bench.items}
    built: list[tuple[Storyline, str, int, int]] = []
    for i, bs in enumerate(bench.storylines, 1):
        start = first_scored(bs, bench)
        cut = start + math.ceil(TEACH_SHARE * (len(bench.items) - start))
        built.append((build_storyline(i, bs, items_by_id), bs.id, start, cut))
    for idx, bitem in enumerate(bench.items):
        active = [(s, gid, cut) for s, gid, start, cut in built if start <= idx]
        if not active:
            matcher.observe([bitem.item])
            continue
        by_id = {s.id: (gid, cut) for s, gid, cut in active}
        text = f"{bitem.item.title} {bitem.item.summary}"
        for a in matcher.assess([bitem.item], [s for s, _, _ in active]):
            gid, cut = by_id[a.storyline_id]
            yield Seen(a, gid in bitem.labels, idx < cut, text)


def replay(bench: Benchmark, presser: Presser, config: FeedbackConfig) -> Figures:
    """Stream ``bench`` through a matcher with feedback; figures on the measured part."""
    matcher = Matcher()
    steering = Steering(config=config)
    matcher.review = partial(steering.review, matcher, matcher.config.threshold)
    tp = fp = fn = ups = downs = fp_taught = 0
    rejected: set[int] = set()
    for seen in stream(bench, matcher):
        a, gold, teaching, text = seen.a, seen.gold, seen.teaching, seen.text
        verdict = presser(a.storyline_id, a.matched, gold, teaching)
        if verdict is not None:
            steering.add(Example(a.storyline_id, verdict, text, score=a.score))
            ups += verdict == "up"
            downs += verdict == "down"
            if verdict == "down" and teaching:
                rejected.add(a.storyline_id)
        if teaching:
            continue
        tp += a.matched and gold
        fp += a.matched and not gold
        fn += (not a.matched) and gold
        fp_taught += a.matched and not gold and a.storyline_id in rejected
    return Figures(tp, fp, fn, ups, downs, fp_taught)


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a value from ``pos`` exceeds one from ``neg``), ties counting half."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def why(bench: Benchmark) -> str:
    """One table row: what per-storyline feedback could reach, and whether the oracle
    user's presses separate the measured false alarms from the hits (see ``--why``)."""
    items_by_id = {b.item.key: b.item for b in bench.items}
    cores = {i: core_words(build_storyline(i, bs, items_by_id))
             for i, bs in enumerate(bench.storylines, 1)}
    matcher = Matcher()
    ups: dict[int, list[frozenset[str]]] = {}
    downs: dict[int, list[frozenset[str]]] = {}
    down_top: dict[int, float] = {}
    tp = fp = fn = fp_reach = fn_reach = fp_unlabelled = 0
    labels = {b.item.key: b.labels for b in bench.items}
    feats: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    miss_sims: list[float] = []
    other_sims: list[float] = []
    for seen in stream(bench, matcher):
        a, gold, sid = seen.a, seen.gold, seen.a.storyline_id
        bag = words(seen.text, cores[sid])
        if seen.teaching:
            if a.matched:  # the oracle user's presses: only on what was alerted
                (ups if gold else downs).setdefault(sid, []).append(bag)
                if not gold:
                    down_top[sid] = max(down_top.get(sid, 0.0), a.score)
            continue
        tp += a.matched and gold
        fp += a.matched and not gold
        # A false alarm on an item no storyline of the file claims: WCEP's portal
        # links many events to no story page, on-topic ones included.
        fp_unlabelled += a.matched and not gold and not labels[a.item_key]
        fn += (not a.matched) and gold
        liked = ups.get(sid, [])
        if not a.matched and liked:
            s_up = max(similarity(bag, u, matcher.idf) for u in liked)
            if gold:
                fn_reach += 1
                miss_sims.append(s_up)
            else:
                other_sims.append(s_up)
        rejected = downs.get(sid, [])
        if not (a.matched and rejected):
            continue
        fp_reach += not gold
        s_dn = max(similarity(bag, d, matcher.idf) for d in rejected)
        s_up = max((similarity(bag, u, matcher.idf) for u in liked), default=0.0)
        n_d, n_u = len(rejected), len(liked)
        odds = sum(
            math.log((sum(t in d for d in rejected) + 0.5) / (n_d + 1))
            - math.log((sum(t in u for u in liked) + 0.5) / (n_u + 1))
            for t in sorted(bag)  # one order, so one float sum on every run
        )
        feats[gold].append((s_dn - s_up, odds, a.score - down_top[sid]))
    base = Figures(tp, fp, fn)
    best = Figures(tp, fp - fp_reach, fn)
    # Let through as many unalerted items as there are such misses, the nearest to a 👍
    # first: how many of them are misses (the rest would be new false alarms).
    ranked = sorted([(x, True) for x in miss_sims] + [(x, False) for x in other_sims],
                    key=lambda p: -p[0])
    top_hits = sum(is_miss for _, is_miss in ranked[: len(miss_sims)])
    rescue_f1, got, extra = base.f1, 0, 0
    for _, is_miss in ranked:  # let through from the nearest to a 👍 down
        got += is_miss
        extra += not is_miss
        rescue_f1 = max(rescue_f1, Figures(tp + got, fp + extra, fn - got).f1)
    signs = (1.0, 1.0, -1.0)  # (c): a lower score than the rejected ones marks a false alarm
    aucs = [auc([sg * f[k] for f in feats[False]], [sg * f[k] for f in feats[True]])
            for k, sg in enumerate(signs)]
    # The most any one cutoff on each signal could gain, the cutoff chosen with the
    # answers (an upper bound for a mechanism that uses that signal alone).
    gains = []
    for k, sg in enumerate(signs):
        marks = sorted([(sg * f[k], False) for f in feats[False]]
                       + [(sg * f[k], True) for f in feats[True]], reverse=True)
        best_f1, cut_fp, cut_tp = base.f1, 0, 0
        for _, is_hit in marks:  # drop the alerts from the most false-alarm-like down
            cut_tp += is_hit
            cut_fp += not is_hit
            best_f1 = max(best_f1, Figures(tp - cut_tp, fp - cut_fp, fn + cut_tp).f1)
        gains.append(best_f1 - base.f1)
    return (f"| {bench.name} | {fp_reach} / {fp} | {fp_unlabelled} "
            f"| {best.cell()} ({best.f1 - base.f1:+.3f}) "
            f"| {len(feats[False])} / {len(feats[True])} | "
            + " | ".join(f"{x:.2f} ({g:+.3f})" for x, g in zip(aucs, gains, strict=True))
            + f" | {fn_reach} / {fn} | {auc(miss_sims, other_sims):.2f} "
            f"| {top_hits} / {len(miss_sims)} ({rescue_f1 - base.f1:+.3f}) |")


def no_user(sid: int, matched: bool, gold: bool, teaching: bool) -> str | None:
    return None


def oracle_user(sid: int, matched: bool, gold: bool, teaching: bool) -> str | None:
    if not (matched and teaching):
        return None
    return "up" if gold else "down"


def random_user(seed: int) -> Presser:
    rng = random.Random(seed)

    def press(sid: int, matched: bool, gold: bool, teaching: bool) -> str | None:
        return "down" if matched and rng.random() < RANDOM_SHARE else None

    return press


def median_figures(runs: Sequence[Figures]) -> Figures:
    return sorted(runs, key=lambda f: f.f1)[len(runs) // 2]


def speed(n_storylines: int = 100, n_items: int = 2000, batch: int = 200) -> None:
    """Items per CPU-second of ``Matcher.match`` (bench_match's synthetic stream) with no
    feedback, with 10% of the storylines given five 👎 each, and with 10% broad."""
    import time
    from datetime import UTC, datetime, timedelta

    import bench_match as bm

    def run(steer: Callable[[list[Storyline], Steering], None]) -> float:
        bm.RNG.seed(20231017)
        sls = bm.storylines(n_storylines)
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        m = Matcher()
        steering = Steering()
        steer(sls, steering)
        steering.install(m, m.config.threshold)
        m.match(bm.items(batch, t0), sls)
        stream = bm.items(n_items, t0 + timedelta(days=1))
        cpu = time.process_time()
        for k in range(0, n_items, batch):
            m.match(stream[k : k + batch], sls)
        return n_items / (time.process_time() - cpu)

    def rejected(sls: list[Storyline], steering: Steering) -> None:
        for s in sls[:: 10]:
            for it in bm.items(5, datetime(2023, 1, 1, tzinfo=UTC)):
                steering.add(Example(s.id, "down", f"{it.title} {it.summary}", score=0.5))

    def broad(sls: list[Storyline], steering: Steering) -> None:
        for s in sls[:: 10]:
            steering.set_threshold(s.id, 0.15)

    print(f"\nmatch() throughput, {n_storylines} storylines, {n_items} items in batches of "
          f"{batch}; items per CPU-second, median of 3:")
    for name, steer in (("no feedback", lambda sls, st: None), ("10% with five 👎", rejected),
                        ("10% broad", broad)):
        print(f"  {name}: {statistics.median(run(steer) for _ in range(3)):,.0f}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--grid", action="store_true", help="also try a few feedback settings")
    ap.add_argument("--why", action="store_true",
                    help="only what feedback could reach, and whether presses carry a signal")
    ap.add_argument("--speed", action="store_true",
                    help="only the matcher's throughput with and without feedback")
    args = ap.parse_args(argv)
    if args.speed:
        speed()
        return 0
    files = args.files or sorted(BENCH_DIR.glob("*.json"))
    benches = [load_benchmark(f) for f in files]
    if args.why:
        print("| file | false alarms of a 👎-taught storyline / all | of all, on items no "
              "storyline of the file claims | F1 / P / R if all those "
              "were removed (ΔF1) | false alarms / hits compared | AUC (best ΔF1 of any "
              "cutoff): (a) nearest 👎 − nearest 👍 | (b) word log-odds 👎 vs 👍 | (c) score "
              "under the top 👎 "
              "| misses of a 👍-taught storyline / all | AUC (d) of those against its "
              "non-story items, by resemblance to a 👍 | misses among as many items let "
              "through, nearest a 👍 first (best ΔF1 of any cutoff) |")
        print("| --- " * 11 + "|")
        for bench in benches:
            print(why(bench), flush=True)
        return 0
    print(f"feedback: {DEFAULT_FEEDBACK}")
    print("F1 / P / R on the last 70% of each storyline's scored items\n")
    print("| file | positives measured | no feedback | 👎 on false alarms, 👍 on hits "
          "(first 30%) | ΔF1 | ΔP | ΔR | presses 👍 / 👎 | false alarms measured: of a "
          "storyline given a 👎 / all "
          "| 👎 on 10% of alerts at random (median of 3) | ΔF1 | ΔR |")
    print("| --- " * 12 + "|")
    for bench in benches:
        base = replay(bench, no_user, DEFAULT_FEEDBACK)
        user = replay(bench, oracle_user, DEFAULT_FEEDBACK)
        rand = median_figures([replay(bench, random_user(s), DEFAULT_FEEDBACK) for s in SEEDS])
        print(f"| {bench.name} | {base.tp + base.fn} | {base.cell()} | {user.cell()} "
              f"| {user.f1 - base.f1:+.3f} | {user.precision - base.precision:+.3f} "
              f"| {user.recall - base.recall:+.3f} | {user.ups} / {user.downs} "
              f"| {user.fp_taught} / {user.fp} "
              f"| {rand.cell()} | {rand.f1 - base.f1:+.3f} | {rand.recall - base.recall:+.3f} |",
              flush=True)
    if args.grid:
        # The similarity penalty alone (bar fixed), then the bar with and without it.
        grid = [
            replace(DEFAULT_FEEDBACK, centroid=c, floor=f, weight=w, support=g, raise_bar=0.0)
            for c in (False, True) for f in (0.1, 0.2) for w in (2.0, 4.0) for g in (0.0, 0.5, 1.0)
        ] + [
            replace(DEFAULT_FEEDBACK, weight=w, raise_bar=r, miss_cost=m)
            for w in (0.0, 2.0) for r in (0.0, 0.1, 0.2, 0.4) for m in (1.0, 2.0)
        ]
        print("\n| centroid | floor | weight | support | raise_bar | miss_cost | " + " | ".join(
            b.name for b in benches) + " | random F1 (seed 1, mean of files) |")
        print("| --- " * (7 + len(benches)) + "|")
        for cfg in grid:
            cells = [replay(b, oracle_user, cfg).cell() for b in benches]
            r = [replay(b, random_user(1), cfg).f1 for b in benches]
            print(f"| {cfg.centroid} | {cfg.floor} | {cfg.weight} | {cfg.support} "
                  f"| {cfg.raise_bar} | {cfg.miss_cost} | " + " | ".join(cells)
                  + f" | {statistics.mean(r):.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
