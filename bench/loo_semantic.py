"""Leave-one-file-out choice of HybridConfig (docs/semantic.md), cosines computed once.

Needs the semantic extra and the weights. Every setting of the grid below runs on
every file; each file gets the setting with the best mean F1 on the other files;
the shipped value of each knob is the median (low) of those choices:

    PYTHONPATH=. .venv/bin/python bench/loo_semantic.py --jobs 2 ../shared/benchmarks/*.json

Cosines come from the encoder the bot would use here (int8 where faithful);
``--float32`` forces the float32 one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bot.evaluation import Benchmark, build_storyline, evaluate, load_benchmark
from bot.models import Item, Storyline
from bot.storylines import semantic as sem
from bot.storylines.minilm_int8 import load_embedder

GRID: dict[str, list[float]] = {
    "weight": [0.5],
    "threshold": [0.35],
    "rescue": [0.7, 0.75, 0.8, 0.85, 1.01],
}
_CACHE: dict[str, tuple[Benchmark, Any]] = {}
_INT8 = "--float32" not in sys.argv


class _Precomputed:
    """Cosines from vectors embedded once per file (same texts as SemanticScorer)."""

    def __init__(self, items: dict[str, Any], storylines: Any) -> None:
        self.items, self.storylines = items, storylines

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        import numpy as np

        a = np.stack([self.items[i.key] for i in items])
        b = np.stack([self.storylines[s.id - 1] for s in storylines])
        out: list[list[float]] = np.clip(a @ b.T, 0.0, 1.0).astype(float).tolist()
        return out


def _scorer(path: str) -> tuple[Benchmark, _Precomputed]:
    if path not in _CACHE:
        bench = load_benchmark(Path(path))
        emb, _ = load_embedder(int8=_INT8)
        by_id = {b.item.key: b.item for b in bench.items}
        sls = [build_storyline(i, bs, by_id) for i, bs in enumerate(bench.storylines, 1)]
        iv = emb.embed([sem.item_text(b.item) for b in bench.items])
        sv = emb.embed([sem.storyline_text(s) for s in sls])
        vecs = {b.item.key: iv[i] for i, b in enumerate(bench.items)}
        _CACHE[path] = (bench, _Precomputed(vecs, sv))
    return _CACHE[path]


def _run(job: tuple[str, tuple[tuple[str, float], ...]]) -> tuple[float, float]:
    path, setting = job
    bench, pre = _scorer(path)
    cfg = sem.HybridConfig(**dict(setting))
    r = evaluate(bench, lambda: sem.HybridMatcher(pre, cfg))  # type: ignore[arg-type]
    return r.f1, r.cdet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--float32", action="store_true", help="embed with the float32 encoder")
    args = parser.parse_args()
    print("encoder:", load_embedder(int8=not args.float32)[1])
    files: list[str] = args.files
    settings = [tuple(zip(GRID, c, strict=True)) for c in itertools.product(*GRID.values())]
    work = [(f, s) for s in settings for f in files]
    with ProcessPoolExecutor(args.jobs) as pool:
        figs = list(pool.map(_run, work))
    n = len(files)
    table = {s: figs[i * n : (i + 1) * n] for i, s in enumerate(settings)}
    for s, row in table.items():
        print(" ".join(f"{k}={v:g}" for k, v in s), "|",
              " | ".join(f"{f:.3f} / {c:.3f}" for f, c in row))
    chosen = []
    for held in range(n):
        best = max(settings, key=lambda s: sum(table[s][j][0] for j in range(n) if j != held))
        chosen.append(best)
        f1, cdet = table[best][held]
        print(f"held out {Path(files[held]).stem}: chosen {dict(best)} -> F1 {f1:.3f} "
              f"Cdet {cdet:.3f}")
    median = tuple((k, statistics.median_low([dict(c)[k] for c in chosen])) for k in GRID)
    print("median:", dict(median), "->",
          " / ".join(f"F1 {f:.3f} Cdet {c:.3f}" for f, c in table[median]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
