"""``storywatch worker``: polls leased feeds and, when elected, delivers alerts.

Run as many as the feeds need, on one machine or several, all on one
PostgreSQL database (``STORYWATCH_DATABASE_URL``; SQLite works for workers on
one machine). Each loop:

- leases the due feeds batch by batch (``Database.lease_due_feeds``: ``FOR
  UPDATE SKIP LOCKED`` on PostgreSQL, a lease that runs out) and polls them,
  so each feed is polled by one worker per interval;
- holds or tries to take the ``sender`` lease: the one worker holding it runs
  the Sender, so Telegram's limits (one ``SendLimiter``) hold across every
  worker. It renews the lease every few seconds; a worker that cannot renew
  stops sending, and when one dies (SIGKILL included) another takes the lease
  once it runs out and gives back the dead one's claims once they expire.

The Telegram front end (commands) is ``storywatch run --front-end``; webhook
mode lets several front ends share the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from datetime import timedelta

from telegram import Bot
from telegram.error import InvalidToken, NetworkError, TelegramError

from bot.bootstrap import open_database, running_poller
from bot.delivery.election import SenderSeat, holder_id
from bot.delivery.sender import Sender, SenderOptions
from bot.errors import StorageError
from bot.observability.logs import configure_logging
from bot.pipeline import Poller
from bot.settings import Settings
from bot.storage.repository import Database

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How long leases last and how often a worker looks for work."""

    feed_lease: float = 120.0  # a polled batch must finish within it (fetch deadlines)
    batch: int = 50  # feeds leased and polled together
    sender_ttl: float = 15.0  # the sender lease; a dead sender is replaced after it
    renew_every: float = 5.0
    claim_lease: float = 60.0  # alerts claimed by a dead sender are pending again after it
    idle: float = 1.0  # between passes that found nothing due


def run_worker(settings: Settings, options: WorkerOptions | None = None) -> int:
    """Run one worker until SIGTERM/SIGINT; returns the exit code."""
    token = settings.bot_token()
    configure_logging(settings.file.log_format, settings.file.log_level, [token])
    try:
        return asyncio.run(_main(settings, token, options or WorkerOptions()))
    except InvalidToken:
        log.error("Telegram refused the bot token: check TELEGRAM_BOT_TOKEN")
        return 2


async def _main(settings: Settings, token: str, options: WorkerOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    me = holder_id()
    db = await asyncio.to_thread(open_database, settings)
    try:
        async with running_poller(settings, db) as poller:
            from bot.app import build_application  # PTB's request setup, one place

            bot = build_application(settings, token).bot
            delivery = asyncio.create_task(
                _deliver_when_elected(db, bot, me, options, stop, poller))
            log.info("worker %s polling feeds every %.0fs", me, settings.env.poll_interval)
            lease = timedelta(seconds=options.feed_lease)
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        report = await poller.poll_leased(
                            me, lease=lease, batch=options.batch, stopping=stop.is_set
                        )
                    except StorageError as exc:
                        log.error("poll pass stopped: %s", exc)
                    else:
                        if report.feeds:
                            log.info("%s (%.1fs)", report.describe(), time.monotonic() - started)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), options.idle)
            finally:
                stop.set()
                await delivery
    finally:
        db.close()
    log.info("worker %s stopped", me)
    return 0


async def _deliver_when_elected(
    db: Database, bot: Bot, me: str, options: WorkerOptions, stop: asyncio.Event,
    poller: Poller,
) -> None:
    """Run the Sender while this worker holds the sender lease (``delivery.election``)."""
    started_bot = False

    async def make() -> Sender | None:
        nonlocal started_bot
        if not started_bot:
            try:
                await bot.initialize()
                started_bot = True
            except (NetworkError, TelegramError) as exc:
                log.warning("cannot reach Telegram (%s); alerts wait", exc)
                return None
        return Sender(db, bot, options=SenderOptions(
            claim_lease=options.claim_lease, lease_check=min(options.claim_lease / 2, 30.0),
        ))

    seat = SenderSeat(db, me, make, ttl=options.sender_ttl, renew_every=options.renew_every)
    poller.on_alerts = seat.wake
    try:
        await seat.run(stop)
    finally:
        if started_bot:
            with contextlib.suppress(Exception):
                await bot.shutdown()
