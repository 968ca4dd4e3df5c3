"""Helpers shared by the CLI subcommands: settings and database from the environment,
and the one way a command reports an error."""

from __future__ import annotations

import sys

from bot.settings import Settings, load_settings
from bot.storage.ports import CliStore


def settings_and_db(*, sync: bool = True) -> tuple[Settings, CliStore]:
    """Load settings (ConfigError on a broken setup) and open the database."""
    from bot.bootstrap import open_database

    settings = load_settings()
    return settings, open_database(settings, sync=sync)


def fail(message: str, code: int = 1) -> int:
    """Print ``storywatch: error: MESSAGE`` on stderr (argparse's own style) and
    return ``code``, the exit status."""
    print(f"storywatch: error: {message}", file=sys.stderr)
    return code
