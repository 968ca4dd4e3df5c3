"""Helpers shared by the CLI subcommands: settings and database from the environment."""

from __future__ import annotations

from bot.settings import Settings, load_settings
from bot.storage.repository import Database


def settings_and_db(*, sync: bool = True) -> tuple[Settings, Database]:
    """Load settings (ConfigError on a broken setup) and open the database."""
    from bot.bootstrap import open_database

    settings = load_settings()
    return settings, open_database(settings, sync=sync)
