"""``storywatch eval BENCH.json``: measure the matcher on a tracking benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.errors import ConfigError
from bot.evaluation import run_eval


def _run(args: argparse.Namespace) -> int:
    status = 0
    for bench in args.benchmarks:
        try:
            status |= run_eval(Path(bench), args.predictions, sys.stdout)
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
        "matcher configuration; the last line is 'F1 .. P .. R .. Cdet ..'.",
    )
    parser.add_argument("benchmarks", nargs="+", metavar="BENCH.json")
    parser.add_argument(
        "--predictions", type=Path, default=None, metavar="OUT.jsonl",
        help="write every decision as a JSON line",
    )
    parser.set_defaults(func=_run)
