"""The ``storywatch`` command line: one subcommand per module in this package.

Each module defines ``register(subparsers)``, which adds its subcommand and sets
``func`` to a callable taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import bot.cli.eval as eval_cmd
import bot.cli.feeds as feeds
import bot.cli.health as health
import bot.cli.matches as matches
import bot.cli.poll as poll
import bot.cli.run as run
import bot.cli.seed as seed
import bot.cli.storylines as storylines
import bot.cli.timeline as timeline
import bot.cli.worker as worker
from bot import __version__
from bot.cli.common import fail
from bot.errors import ConfigError, StorageError

_MODULES = (run, worker, poll, feeds, storylines, matches, timeline, seed, eval_cmd, health)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storywatch",
        description="Watch news feeds and alert Telegram chats when followed storylines move.",
    )
    parser.add_argument("--version", action="version", version=f"storywatch {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in _MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return fail(str(exc), 2)
    except StorageError as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130
    return code
