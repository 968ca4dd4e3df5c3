"""``storywatch worker``: poll feeds and deliver alerts beside other workers."""

from __future__ import annotations

import argparse

from bot.cli.common import fail
from bot.errors import ConfigError
from bot.settings import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "worker",
        help="poll feeds and deliver alerts; run several beside 'run --front-end'",
        description="Poll the due feeds this worker leases and, while it holds the "
        "sender lease, deliver alerts. Several workers share one database "
        "(STORYWATCH_DATABASE_URL=postgresql://...). Needs TELEGRAM_BOT_TOKEN.",
    )
    p.add_argument("--batch", type=int, default=50, help="feeds leased at a time (50)")
    p.add_argument("--feed-lease", type=float, default=120.0, metavar="SECONDS",
                   help="how long a leased feed is this worker's (120)")
    p.add_argument("--sender-ttl", type=float, default=15.0, metavar="SECONDS",
                   help="the sender lease; a dead sender is replaced after it (15)")
    p.add_argument("--claim-lease", type=float, default=60.0, metavar="SECONDS",
                   help="alerts claimed by a dead sender go out again after it (60)")
    p.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        settings.bot_token()
    except ConfigError as exc:
        return fail(f"{exc}\nset TELEGRAM_BOT_TOKEN for the worker's alerts", 2)
    if min(args.batch, args.feed_lease, args.sender_ttl, args.claim_lease) <= 0:
        return fail("--batch and the lease durations must be positive", 2)
    from bot.worker import WorkerOptions, run_worker

    return run_worker(settings, WorkerOptions(
        feed_lease=args.feed_lease, batch=args.batch, sender_ttl=args.sender_ttl,
        renew_every=max(0.5, args.sender_ttl / 3), claim_lease=args.claim_lease,
    ))
