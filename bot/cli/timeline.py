"""``storywatch timeline ID [--tz ZONE]``: a storyline's developments, as ``/timeline`` has them."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from bot.cli.common import fail, settings_and_db
from bot.delivery import timeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "timeline", help="a storyline's developments, one dated line each with its outlets",
        description="Print a storyline's developments, newest first: one dated line each, "
                    "with its outlets and the reports collapsed into it (as /timeline does).",
    )
    p.add_argument("storyline", type=int, metavar="ID", help="the storyline's id")
    p.add_argument("--tz", default="UTC", metavar="ZONE",
                   help="time zone of the dates, e.g. Europe/Paris (default UTC)")
    p.set_defaults(func=_timeline)


def _timeline(args: argparse.Namespace) -> int:
    try:
        ZoneInfo(args.tz)
    except (ValueError, KeyError, OSError):
        return fail(f"“{args.tz}” is not a time zone name like Europe/Paris or UTC", 2)
    _, db = settings_and_db()
    try:
        storyline = db.get_storyline(args.storyline)
        if storyline is None:
            return fail(f"there is no storyline {args.storyline} (storywatch storylines list)")
        rows = db.timeline(storyline.id)
    finally:
        db.close()
    print(timeline.text(storyline.id, storyline.title, rows, None if args.tz == "UTC" else args.tz))
    return 0
