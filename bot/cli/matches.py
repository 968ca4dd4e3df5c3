"""``storywatch matches [--storyline ID] [--since 2d]``: what matched, and why, from the shell."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from bot.cli.common import fail, settings_and_db
from bot.storage.repository import MatchRow

_SPAN_RE = re.compile(r"^(\d{1,5})([mhdw])$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_span(text: str) -> timedelta:
    """``30m``, ``12h``, ``2d``, ``1w`` -> a timedelta; ValueError otherwise."""
    m = _SPAN_RE.match(text.strip().lower())
    if m is None:
        raise ValueError(f"“{text}” is not a time span like 30m, 12h, 2d or 1w")
    return timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "matches", help="list recent matches: item, storyline, score and the reason",
        description="List what matched which storyline and why, newest first.",
    )
    p.add_argument("--storyline", type=int, metavar="ID", help="only this storyline")
    p.add_argument("--since", default="2d", metavar="SPAN",
                   help="how far back: 30m, 12h, 2d, 1w (default 2d)")
    p.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    p.set_defaults(func=_matches)


def describe(row: MatchRow) -> str:
    item = row.item
    dup = " [duplicate: folded into an earlier alert]" if row.duplicate else ""
    return (
        f"{row.created_at.astimezone(UTC):%Y-%m-%d %H:%M}Z  #{row.storyline_id} "
        f"{row.storyline_title}  score {row.score:.2f}{dup}\n"
        f"    {item.title} — {item.source}\n"
        f"    why: {row.reason}" + (f"\n    {item.link}" if item.link else "")
    )


def _matches(args: argparse.Namespace) -> int:
    try:
        span = parse_span(args.since)
    except ValueError as exc:
        return fail(str(exc), 2)
    _, db = settings_and_db()
    try:
        rows = db.matches(
            since=datetime.now(UTC) - span, storyline_id=args.storyline, limit=args.limit
        )
    finally:
        db.close()
    scope = f"storyline {args.storyline}" if args.storyline else "any storyline"
    if not rows:
        print(f"no matches for {scope} in the last {args.since}")
        return 0
    for row in rows:
        print(describe(row))
    print(f"{len(rows)} match(es) for {scope} in the last {args.since}")
    return 0
