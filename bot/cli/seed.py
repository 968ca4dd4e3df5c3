"""``storywatch seed FILE...``: propose storylines to track from documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.storylines.seeding import Proposal, propose_storylines


def format_proposal(n: int, p: Proposal) -> str:
    """A proposal as a few readable lines."""
    lines = [f"{n}. {p.title}  (score {p.score:.1f})"]
    for e in p.entities:
        alias = f" — also: {', '.join(e.aliases)}" if e.aliases else ""
        lines.append(f"   {e.kind}: {e.name}{alias}")
    if p.keywords:
        lines.append(f"   keywords: {', '.join(p.keywords)}")
    if p.when:
        lines.append(f"   when: {'; '.join(p.when)}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read {name}: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"# {name}")
        proposals = propose_storylines(text, limit=args.limit)
        if not proposals:
            print("no storylines found")
        for n, p in enumerate(proposals, 1):
            print(format_proposal(n, p))
    return status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``seed`` subcommand."""
    parser = subparsers.add_parser(
        "seed", help="propose storylines from documents",
        description="Read each FILE and print the storylines it suggests tracking.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--limit", type=int, default=5, help="proposals per file (default 5)")
    parser.set_defaults(func=_run)
