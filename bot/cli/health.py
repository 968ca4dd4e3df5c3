"""``storywatch health``: exit 0 when the running bot polls and reaches Telegram, 1 otherwise.

Made for the container's HEALTHCHECK: it reads the heartbeats the bot leaves
in its database, the SQLite file or PostgreSQL (``STORYWATCH_DATABASE_URL``; see
``bot.health``), and never writes anything. Every failure,
a broken setup included, exits 1, because Docker reserves exit code 2.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.errors import ConfigError
from bot.health import check_store
from bot.settings import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "health",
        help="check that the running bot polls feeds and reaches Telegram (exit 0 or 1)",
        description="Read the bot's heartbeats from its database. Exits 0 and prints "
        "'healthy' when the last poll pass and the last successful Telegram call are "
        "recent; exits 1 and prints the reasons otherwise.",
    )
    p.set_defaults(func=_health)


def _health(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"unhealthy: {exc}")
        return 1
    url = settings.env.database_url
    verdict = check_store(
        settings.database_path, None if url is None else url.get_secret_value(),
        settings.env.poll_interval, datetime.now(UTC),
    )
    # stdout either way: `docker inspect` shows it as the health log.
    print(verdict.describe())
    return 0 if verdict.ok else 1
