"""``storywatch poll --once [--force]``: one pass over the due feeds (or all), without Telegram.

A pass with nothing due says when each feed is next due instead of printing an
empty total, so a second ``poll --once`` right after the first is not a mystery.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime

from bot.bootstrap import running_poller
from bot.cli.common import settings_and_db
from bot.models import Feed
from bot.pipeline import PassReport
from bot.settings import Settings
from bot.storage.ports import CliStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "poll",
        help="poll the due feeds once and store new items and matches (no Telegram)",
        description="Poll every due feed once. Prints one line per feed and a total line. "
        "Exits 0 even when some feeds fail; non-zero only for a broken setup.",
    )
    p.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    p.add_argument(
        "--force", action="store_true",
        help="poll every feed now, due or not (conditional requests are still sent)",
    )
    p.set_defaults(func=_poll)


def _poll(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings, db = settings_and_db()
    try:
        if args.force:
            db.make_all_due()
        report = asyncio.run(_one_pass(settings, db))
        if not report.feeds:
            print(nothing_due(db.list_feeds(), datetime.now(UTC)))
            return 0
    finally:
        db.close()
    for feed in sorted(report.feeds, key=lambda f: f.feed_id):
        print(feed.describe())
    print(report.describe())
    return 0


def nothing_due(feeds: list[Feed], now: datetime) -> str:
    """What a pass that polled nothing says: when each feed is next due."""
    if not feeds:
        return "no feeds to poll; add one with: storywatch feeds add URL"
    lines = []
    for f in feeds:
        at = f.state.next_check
        when = "now"
        if at is not None:
            wait = max(0, round((at - now).total_seconds()))
            when = f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z (in {wait} s)"
        lines.append(f"[{f.id}] {f.title or f.url}: next due {when}")
    lines.append(f"total: nothing due yet, 0 of {len(feeds)} feeds polled; "
                 "--force polls them all now")
    return "\n".join(lines)


async def _one_pass(settings: Settings, db: CliStore) -> PassReport:
    async with running_poller(settings, db) as poller:
        return await poller.poll_due()
