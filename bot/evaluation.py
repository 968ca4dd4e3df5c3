"""Storyline-tracking evaluation, following the protocol of shared/benchmarks/FORMAT.md.

Per storyline, the scored items are those after its last seed item; seed items
are never scored. Items are fed to the matcher one at a time in time order, so
no decision uses a later item; the matcher may learn from what it has seen
(never from gold labels). Reports micro precision/recall/F1 over all scored
pairs and the topic-averaged normalised TDT cost ``Cdet = P_miss + 4.9 P_fa``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any, Protocol, TextIO

from bot.errors import ConfigError
from bot.models import Item, Storyline
from bot.storylines.matcher import DEFAULT_CONFIG, Assessment, Matcher, MatcherConfig

# Cost weights of the TDT tracking task: C_miss=1, C_fa=0.1, P_target=0.02.
_C_MISS = 1.0
_C_FA = 0.1
_P_TARGET = 0.02


@dataclass(frozen=True, slots=True)
class BenchStoryline:
    """A storyline as the benchmark states it."""

    id: str
    title: str
    seed_documents: tuple[tuple[str, str], ...]  # (title, text)
    seed_items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BenchItem:
    """A stream item with its gold storyline labels."""

    item: Item
    labels: frozenset[str]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A whole benchmark file: storylines and the time-ordered item stream."""

    name: str
    storylines: tuple[BenchStoryline, ...]
    items: tuple[BenchItem, ...]


@dataclass(frozen=True, slots=True)
class Prediction:
    """One decision, as written to the predictions file."""

    storyline: str
    item: str
    score: float
    match: bool


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Micro P/R/F1 over all scored pairs and topic-averaged detection cost."""

    name: str
    pairs: int
    positives: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    cdet: float
    predictions: tuple[Prediction, ...]


class MatcherLike(Protocol):
    """What the evaluation needs from a matcher."""

    def observe(self, items: Sequence[Item]) -> None: ...

    def assess(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[Assessment]: ...


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def load_benchmark(path: Path) -> Benchmark:
    """Read a benchmark JSON file; raise ConfigError if it is not in the documented format."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        storylines = tuple(
            BenchStoryline(
                id=str(s["id"]),
                title=str(s["title"]),
                seed_documents=tuple(
                    (str(d.get("title", "")), str(d.get("text", "")))
                    for d in s.get("seed_documents", [])
                ),
                seed_items=tuple(str(i) for i in s.get("seed_items", [])),
            )
            for s in doc["storylines"]
        )
        items = tuple(
            BenchItem(
                Item(
                    key=str(it["id"]),
                    title=str(it.get("title", "")),
                    summary=str(it.get("summary", "")),
                    link=it.get("link") or None,
                    published=_parse_time(it.get("published")),
                    source=str(it.get("source", "")),
                ),
                frozenset(str(x) for x in it.get("storylines", [])),
            )
            for it in doc["items"]
        )
        name = str(doc.get("name", Path(path).stem))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read benchmark {path}: {exc}") from exc
    return Benchmark(name, storylines, items)


def build_storyline(index: int, bs: BenchStoryline, items_by_id: dict[str, Item]) -> Storyline:
    """The storyline the bot would build: title + seed documents + seed items' text."""
    parts: list[str] = []
    for title, text in bs.seed_documents:
        parts += [title, text]
    for key in bs.seed_items:
        it = items_by_id.get(key)
        if it is not None:
            parts += [it.title, it.summary]
    seed_text = "\n\n".join(p.strip() for p in parts if p and p.strip())
    # Seeded with items of the stream: the story was in the news when the last appeared.
    times = [t for k in bs.seed_items
             if (it := items_by_id.get(k)) is not None and (t := it.published) is not None]
    return Storyline(id=index, title=bs.title, seed_text=seed_text, slug=bs.id,
                     seeded_at=max(times) if times else None)


def first_scored(bs: BenchStoryline, bench: Benchmark) -> int:
    """Index of the first scored item for ``bs``: the one after its last seed item."""
    seeds = set(bs.seed_items)
    last = max((i for i, b in enumerate(bench.items) if b.item.key in seeds), default=-1)
    return last + 1


def _stream(
    bench: Benchmark, matcher: MatcherLike
) -> Iterator[tuple[BenchStoryline, BenchItem, Assessment]]:
    items_by_id = {b.item.key: b.item for b in bench.items}
    built = [
        (build_storyline(i, bs, items_by_id), bs, first_scored(bs, bench))
        for i, bs in enumerate(bench.storylines, 1)
    ]
    by_index = {s.id: bs for s, bs, _ in built}
    for idx, bitem in enumerate(bench.items):
        active = [s for s, _, start in built if start <= idx]
        if not active:
            matcher.observe([bitem.item])
            continue
        # One item at a time: its decisions can use only it and earlier items.
        for a in matcher.assess([bitem.item], active):
            yield by_index[a.storyline_id], bitem, a


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def evaluate(
    bench: Benchmark, matcher_factory: Callable[[], MatcherLike] = Matcher
) -> EvalResult:
    """Run the FORMAT.md tracking protocol on ``bench`` with a fresh matcher."""
    matcher = matcher_factory()
    preds: list[Prediction] = []
    per: dict[str, list[int]] = {bs.id: [0, 0, 0, 0] for bs in bench.storylines}  # tp fp fn tn
    for bs, bitem, a in _stream(bench, matcher):
        gold = bs.id in bitem.labels
        preds.append(Prediction(bs.id, bitem.item.key, round(a.score, 6), a.matched))
        cell = per[bs.id]
        if a.matched and gold:
            cell[0] += 1
        elif a.matched:
            cell[1] += 1
        elif gold:
            cell[2] += 1
        else:
            cell[3] += 1
    tp = sum(c[0] for c in per.values())
    fp = sum(c[1] for c in per.values())
    fn = sum(c[2] for c in per.values())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    # TDT averages per topic; P_miss is undefined for a topic with no on-topic
    # items and P_fa for one with no off-topic items, so each average skips those.
    misses = [_ratio(c[2], c[0] + c[2]) for c in per.values() if c[0] + c[2]]
    fas = [_ratio(c[1], c[1] + c[3]) for c in per.values() if c[1] + c[3]]
    p_miss = sum(misses) / len(misses) if misses else 0.0
    p_fa = sum(fas) / len(fas) if fas else 0.0
    cost = _C_MISS * p_miss * _P_TARGET + _C_FA * p_fa * (1 - _P_TARGET)
    cdet = cost / min(_C_MISS * _P_TARGET, _C_FA * (1 - _P_TARGET))
    return EvalResult(
        name=bench.name,
        pairs=len(preds),
        positives=tp + fn,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        cdet=cdet,
        predictions=tuple(preds),
    )


def write_predictions(result: EvalResult, out: TextIO) -> None:
    """Write every decision as a JSON line {"storyline", "item", "score", "match"}."""
    for p in result.predictions:
        out.write(
            json.dumps(
                {"storyline": p.storyline, "item": p.item, "score": p.score, "match": p.match}
            )
            + "\n"
        )


def run_eval(
    path: Path,
    predictions: Path | None,
    out: TextIO,
    matcher_factory: Callable[[], MatcherLike] = Matcher,
    matcher_name: str = "words",
) -> int:
    """Evaluate a matcher (the default one unless given) on ``path``; print figures,
    last line the summary. Returns a process exit status (0 on success).
    """
    bench = load_benchmark(path)
    result = evaluate(bench, matcher_factory)
    if predictions is not None:
        with Path(predictions).open("w", encoding="utf-8") as fh:
            write_predictions(result, fh)
    out.write(f"benchmark {result.name}: {len(bench.storylines)} storylines, "
              f"{len(bench.items)} items (matcher: {matcher_name})\n")
    out.write(f"scored pairs {result.pairs}, positive {result.positives}, "
              f"tp {result.tp}, fp {result.fp}, fn {result.fn}\n")
    if predictions is not None:
        out.write(f"predictions written to {predictions}\n")
    out.write(
        f"F1 {result.f1:.3f} P {result.precision:.3f} R {result.recall:.3f} "
        f"Cdet {result.cdet:.3f}\n"
    )
    return 0


# -- choosing a knob honestly: leave-one-file-out ---------------------------------


@dataclass(frozen=True, slots=True)
class HeldOut:
    """One leave-one-out round: the setting chosen on the other files, scored on this one."""

    name: str
    chosen: tuple[tuple[str, float], ...]
    f1: float
    cdet: float


@dataclass(frozen=True, slots=True)
class LooReport:
    """Every setting's figures on every file, the leave-one-out rounds, and the default
    that is the per-knob median of the rounds' choices."""

    names: tuple[str, ...]
    table: tuple[tuple[tuple[tuple[str, float], ...], tuple[tuple[float, float], ...]], ...]
    rounds: tuple[HeldOut, ...]
    median: tuple[tuple[str, float], ...]
    median_figures: tuple[tuple[float, float], ...]


def parse_grid(specs: Sequence[str]) -> dict[str, list[float]]:
    """``["threshold=0.2,0.25", "competition=0.5"]`` -> {knob: values}; knobs are
    :class:`MatcherConfig` fields with numeric defaults."""
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        name = name.strip()
        default = getattr(DEFAULT_CONFIG, name, None)
        if not values or isinstance(default, bool) or not isinstance(default, int | float):
            raise ConfigError(f"--grid {spec!r}: expected NUMERIC_FIELD=v1,v2,...")
        try:
            grid[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"--grid {spec!r}: {exc}") from exc
    return grid


def _config(setting: Sequence[tuple[str, float]]) -> MatcherConfig:
    kw: dict[str, Any] = {
        k: type(getattr(DEFAULT_CONFIG, k))(v) for k, v in setting
    }
    return replace(DEFAULT_CONFIG, **kw)


def _figures(job: tuple[str, tuple[tuple[str, float], ...]]) -> tuple[float, float]:
    path, setting = job
    cfg = _config(setting)
    r = evaluate(_load_cached(path), lambda: Matcher(cfg))
    return r.f1, r.cdet


_LOADED: dict[str, Benchmark] = {}


def _load_cached(path: str) -> Benchmark:
    if path not in _LOADED:
        _LOADED[path] = load_benchmark(Path(path))
    return _LOADED[path]


def leave_one_out(
    paths: Sequence[Path], grid: Mapping[str, Sequence[float]], *, jobs: int = 1
) -> LooReport:
    """Run every setting of ``grid`` on every file; for each file, choose the setting
    with the best mean F1 on the *other* files and report what it scores on this one.

    The default to ship is the median, knob by knob, of those choices: a value
    that no single file picked for itself.
    """
    if len(paths) < 2:
        raise ConfigError("leave-one-out needs at least two benchmark files")
    names = tuple(_load_cached(str(p)).name for p in paths)
    keys = list(grid)
    settings = [tuple(zip(keys, combo, strict=True)) for combo in product(*grid.values())]
    work = [(str(p), s) for s in settings for p in paths]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            figures = list(pool.map(_figures, work))
    else:
        figures = [_figures(w) for w in work]
    n = len(paths)
    table = tuple(
        (s, tuple(figures[i * n : (i + 1) * n])) for i, s in enumerate(settings)
    )
    rounds: list[HeldOut] = []
    for held in range(n):
        # Ties go to the earlier setting in grid order, so the choice is deterministic.
        best = max(
            range(len(settings)),
            key=lambda i: (
                sum(table[i][1][j][0] for j in range(n) if j != held) / (n - 1), -i
            ),
        )
        f1, cdet = table[best][1][held]
        rounds.append(HeldOut(names[held], settings[best], f1, cdet))
    median = tuple(
        (k, statistics.median_low([dict(r.chosen)[k] for r in rounds])) for k in keys
    )
    idx = settings.index(median)
    return LooReport(names, table, tuple(rounds), median, table[idx][1])


def _fmt_setting(setting: Sequence[tuple[str, float]]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in setting) or "(defaults)"


def write_loo(report: LooReport, out: TextIO) -> None:
    """The leave-one-out report as readable lines (a Markdown table for the rounds)."""
    out.write("setting | " + " | ".join(f"{n} F1 / Cdet" for n in report.names) + "\n")
    for setting, figs in report.table:
        out.write(_fmt_setting(setting) + " | "
                  + " | ".join(f"{f:.3f} / {c:.3f}" for f, c in figs) + "\n")
    out.write("\n| held-out file | chosen on the other files | F1 | Cdet |\n")
    out.write("| --- | --- | --- | --- |\n")
    for r in report.rounds:
        out.write(f"| {r.name} | {_fmt_setting(r.chosen)} | {r.f1:.3f} | {r.cdet:.3f} |\n")
    out.write(f"\nmedian of the choices: {_fmt_setting(report.median)}\n")
    for name, (f1, cdet) in zip(report.names, report.median_figures, strict=True):
        out.write(f"  {name}: F1 {f1:.3f} Cdet {cdet:.3f}\n")
