"""Gates on the semantic matcher's meaning signal, measured (docs/semantic.md).

Needs the semantic extra and the weights. Runs the shipped words + meaning
matcher on each benchmark file three ways and prints F1, precision, recall and
Cdet for each:

- ``none``: as shipped;
- ``entity``: the cosine counts only where the item names one of the
  storyline's entities (any alias), else 0;
- ``word``: the cosine counts only where the word score of the pair is > 0.

    PYTHONPATH=. .venv/bin/python bench/semantic_gates.py \\
        ../shared/benchmarks/{wcep-2015-09-title,wcep-2015-09-seed1,uci-1pct-seed1}.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.evaluation import evaluate, load_benchmark
from bot.models import Item, Storyline
from bot.storylines import semantic as sem
from bot.storylines.minilm_int8 import load_embedder
from bot.storylines.text import tokens


def _names(item_tokens: list[str], forms: Sequence[tuple[str, ...]]) -> bool:
    for form in forms:
        n = len(form)
        if any(tuple(item_tokens[i : i + n]) == form for i in range(len(item_tokens) - n + 1)):
            return True
    return False


class _GatedScorer:
    """A SemanticScorer whose cosines are zeroed where the gate says no."""

    def __init__(self, scorer: sem.SemanticScorer, gate: str) -> None:
        self.scorer, self.gate = scorer, gate
        self.matcher: sem.HybridMatcher | None = None

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        cos = self.scorer.similarities(items, storylines)
        m = self.matcher
        assert m is not None
        if self.gate == "word":
            words = m.score(items, storylines)
            k = len(storylines)
            return [[c if words[r * k + j].score > 0 else 0.0 for j, c in enumerate(row)]
                    for r, row in enumerate(cos)]
        out = []
        for item, row in zip(items, cos, strict=True):
            toks = tokens(f"{item.title} {item.summary}")
            out.append([
                c if not (ents := m.profile(s).entities)
                or any(_names(toks, e.forms) for e in ents) else 0.0
                for s, c in zip(storylines, row, strict=True)
            ])
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    embedder, why = load_embedder()
    print("encoder:", why)
    for path in args.files:
        bench = load_benchmark(path)
        for gate in ("none", "entity", "word"):
            scorer = sem.SemanticScorer(embedder)

            def factory(scorer: sem.SemanticScorer = scorer, gate: str = gate) -> sem.HybridMatcher:
                if gate == "none":
                    return sem.hybrid_matcher(scorer)
                gated = _GatedScorer(scorer, gate)
                matcher = sem.hybrid_matcher(scorer)
                matcher.scorer = gated  # type: ignore[assignment]
                gated.matcher = matcher
                return matcher

            r = evaluate(bench, factory)
            print(f"{path.stem} gate={gate}: F1 {r.f1:.3f} P {r.precision:.3f} "
                  f"R {r.recall:.3f} Cdet {r.cdet:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
