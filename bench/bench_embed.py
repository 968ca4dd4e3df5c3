"""Embedding speed of the semantic extra: items per second on one core.

Needs the extra and the weights (docs/semantic.md). Embeds the items of the
benchmark files (headline + summary, as the scorer does) with each encoder, the
int8 one the bot prefers and the float32 reference, and prints per file the
median items/s and tokens/s of ``--runs`` runs. BLAS and onnxruntime are held
to one thread unless ``--threads`` says otherwise; the variables must be set
before numpy loads, hence at the top of this script:

    PYTHONPATH=. .venv/bin/python bench/bench_embed.py --runs 5 FILES...   # one core
    PYTHONPATH=. .venv/bin/python bench/bench_embed.py --encoder int8
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> str:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


_THREADS = _threads_from_argv()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bot.evaluation import load_benchmark  # noqa: E402
from bot.storylines.minilm_int8 import Int8MiniLMEmbedder  # noqa: E402
from bot.storylines.semantic import MiniLMEmbedder, item_text  # noqa: E402

DEFAULT_FILES = [
    Path("/work/shared/benchmarks/wcep-2015-09-title.json"),
    Path("/work/shared/benchmarks/uci-1pct-seed1.json"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=1000, help="items per file")
    parser.add_argument("--threads", default="1",
                        help="BLAS threads for float32 (the int8 encoder always uses one)")
    parser.add_argument("--batch-tokens", type=int, default=256)
    parser.add_argument("--encoder", choices=["int8", "float32", "both"], default="both")
    parser.add_argument("--join", type=int, default=1,
                        help="embed N consecutive items as one text (stands for headline + "
                        "summary: the benchmarks have no summaries)")
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus; "
          f"python {platform.python_version()}; threads {_THREADS}")
    kinds = ["int8", "float32"] if args.encoder == "both" else [args.encoder]
    for kind in kinds:
        t0 = time.perf_counter()
        cls = Int8MiniLMEmbedder if kind == "int8" else MiniLMEmbedder
        embedder = cls.load(batch_tokens=args.batch_tokens)
        print(f"{kind}: load {time.perf_counter() - t0:.2f}s (sha256 check"
              f"{', graph build, self-check' if kind == 'int8' else ''})")
        for path in args.files:
            bench = load_benchmark(path)
            texts = [item_text(b.item) for b in bench.items][: args.limit * args.join]
            texts = [" ".join(texts[i : i + args.join]) for i in range(0, len(texts), args.join)]
            n_tok = sum(len(e.ids) for e in embedder._tok.encode_batch(texts))
            embedder.embed(texts[:32])  # warm-up
            rates = []
            for _ in range(args.runs):
                start = time.perf_counter()
                embedder.embed(texts)
                rates.append(len(texts) / (time.perf_counter() - start))
            med = statistics.median(rates)
            print(f"  {path.stem}: {len(texts)} items, {n_tok / len(texts):.1f} tokens/item: "
                  f"median {med:.0f} items/s, {med * n_tok / len(texts):.0f} tokens/s "
                  f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
