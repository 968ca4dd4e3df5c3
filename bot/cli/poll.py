"""``storywatch poll --once``: one pass over every due feed, without Telegram."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bot.bootstrap import running_poller
from bot.cli.common import settings_and_db
from bot.pipeline import PassReport
from bot.settings import Settings
from bot.storage.repository import Database


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "poll",
        help="poll the due feeds once and store new items and matches (no Telegram)",
        description="Poll every due feed once. Prints one line per feed and a total line. "
        "Exits 0 even when some feeds fail; non-zero only for a broken setup.",
    )
    p.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    p.set_defaults(func=_poll)


def _poll(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings, db = settings_and_db()
    try:
        report = asyncio.run(_one_pass(settings, db))
    finally:
        db.close()
    for feed in sorted(report.feeds, key=lambda f: f.feed_id):
        print(feed.describe())
    print(report.describe())
    return 0


async def _one_pass(settings: Settings, db: Database) -> PassReport:
    async with running_poller(settings, db) as poller:
        return await poller.poll_due()
