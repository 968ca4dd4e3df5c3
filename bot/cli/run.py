"""``storywatch run``: the bot itself (Telegram long polling, scheduled polls, delivery)."""

from __future__ import annotations

import argparse
import os
import re

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
    p.add_argument(
        "--front-end", action="store_true",
        help="answer commands only; 'storywatch worker' processes poll and deliver",
    )
    p.add_argument(
        "--webhook", metavar="URL",
        help="receive updates at this public https URL instead of long polling "
        "(python-telegram-bot's webhook server; needs STORYWATCH_WEBHOOK_SECRET)",
    )
    p.add_argument("--webhook-listen", default="0.0.0.0", metavar="ADDRESS",  # noqa: S104
                   help="address the webhook server listens on (0.0.0.0)")
    p.add_argument("--webhook-port", type=int, default=8443, metavar="PORT",
                   help="port the webhook server listens on (8443)")
    p.set_defaults(func=_run)


# What Telegram accepts as a webhook's secret_token.
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


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
    secret = os.environ.get("STORYWATCH_WEBHOOK_SECRET", "")
    if args.webhook is not None:
        if not args.webhook.startswith(("https://", "http://")):
            return fail(f"--webhook needs an http(s) URL, got {args.webhook!r}", 2)
        if not _SECRET.fullmatch(secret):
            return fail(
                "--webhook needs STORYWATCH_WEBHOOK_SECRET: 1-256 characters of A-Z, a-z, "
                "0-9, _ and -; Telegram sends it with every update and the server refuses "
                "posts without it", 2,
            )
    if not 0 < args.webhook_port < 65536:
        return fail(f"--webhook-port must be 1-65535, got {args.webhook_port}", 2)
    from bot.app import Mode, run  # PTB and the pipeline load only for this command

    return run(settings, Mode(
        front_end=args.front_end, webhook_url=args.webhook, listen=args.webhook_listen,
        port=args.webhook_port, secret=secret or None,
    ))
