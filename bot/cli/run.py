"""``storywatch run``: the bot itself (Telegram long polling, scheduled polls, delivery)."""

from __future__ import annotations

import argparse

from bot.cli.common import fail
from bot.errors import ConfigError
from bot.settings import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the Telegram bot: commands, scheduled feed polls, alert delivery",
        description="Run the bot until SIGTERM or SIGINT (then exit 0). Needs "
        "TELEGRAM_BOT_TOKEN (or TELEGRAM_BOT_TOKEN_FILE).",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        settings.bot_token()
    except ConfigError as exc:
        return fail(
            f"{exc}\n"
            "set TELEGRAM_BOT_TOKEN to the token @BotFather gave you, e.g.\n"
            "  TELEGRAM_BOT_TOKEN=123456:ABC... storywatch run",
            2,
        )
    from bot.app import run  # PTB and the pipeline load only for this command

    return run(settings)
