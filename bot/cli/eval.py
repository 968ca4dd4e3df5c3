"""``storywatch eval BENCH.json...``: measure the matcher on tracking benchmarks.

With ``--grid`` it instead chooses knobs honestly: every setting is run on every
file, and each file gets the setting that is best on the *other* files
(leave-one-file-out); the default to ship is the median of those choices.

With ``--semantic`` the same protocol runs with the semantic (words + meaning)
matcher the bot uses for ``[matching] semantic = true``; it needs the
``semantic`` extra and the weights package (docs/semantic.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bot.errors import ConfigError
from bot.evaluation import (
    MatcherLike,
    leave_one_out,
    parse_grid,
    run_eval,
    write_loo,
)


def _semantic_factory(int8: bool) -> Callable[[], Callable[[], MatcherLike]]:
    """Load the model once; each benchmark then gets a fresh matcher and scorer cache
    (item keys of different files may coincide)."""
    from bot.storylines import minilm_int8, semantic

    try:
        embedder, encoder = minilm_int8.load_embedder(int8=int8)
    except semantic.SemanticUnavailable as exc:
        raise ConfigError(f"--semantic: {exc}") from exc
    print(f"encoder: {encoder}")

    def per_file() -> Callable[[], MatcherLike]:
        scorer = semantic.SemanticScorer(embedder, encoder=encoder)
        return lambda: semantic.hybrid_matcher(scorer)

    return per_file


def _run(args: argparse.Namespace) -> int:
    if args.grid:
        if args.semantic:
            print("error: --grid and --semantic cannot be combined", file=sys.stderr)
            return 2
        try:
            report = leave_one_out(
                [Path(b) for b in args.benchmarks], parse_grid(args.grid), jobs=args.jobs
            )
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        write_loo(report, sys.stdout)
        return 0
    per_file = None
    if args.semantic:
        try:
            per_file = _semantic_factory(not args.float32)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    status = 0
    for bench in args.benchmarks:
        try:
            if per_file is None:
                status |= run_eval(Path(bench), args.predictions, sys.stdout)
            else:
                status |= run_eval(Path(bench), args.predictions, sys.stdout, per_file(),
                                   "words + meaning")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
    return status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="measure the storyline matcher on a benchmark file",
        description="Run the tracking protocol of benchmarks/FORMAT.md with the default "
        "matcher configuration; the last line is 'F1 .. P .. R .. Cdet ..'. With --grid, "
        "choose knobs by leave-one-file-out instead.",
    )
    parser.add_argument("benchmarks", nargs="+", metavar="BENCH.json")
    parser.add_argument(
        "--predictions", type=Path, default=None, metavar="OUT.jsonl",
        help="write every decision as a JSON line",
    )
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KNOB=V1,V2,...",
        help="a MatcherConfig knob and the values to try (repeatable): leave-one-file-out",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for --grid")
    parser.add_argument(
        "--semantic", action="store_true",
        help="use the words + meaning matcher (needs the semantic extra and the weights: "
        "docs/semantic.md)",
    )
    parser.add_argument(
        "--float32", action="store_true",
        help="with --semantic, embed with the float32 encoder instead of the int8 one",
    )
    parser.set_defaults(func=_run)
