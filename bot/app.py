"""The composition root of ``storywatch run``: settings, storage, poller, sender, PTB.

One process, one event loop:

- python-telegram-bot's ``Application`` long-polls for updates and runs the
  command handlers (``bot.telegram.handlers``);
- its ``JobQueue`` (APScheduler 3) runs a poll pass every
  ``STORYWATCH_POLL_INTERVAL`` seconds and a Telegram heartbeat;
- the ``Sender`` drains the outbox the poll passes fill, and the ``Replier``
  sends command replies; both wait their turn on one ``SendLimiter``, so
  replies and alerts share Telegram's limits. The Sender runs only while this
  process holds the ``sender`` lease (``bot.delivery.election``), as a worker's
  does: beside workers or another ``run`` on one database there is never more
  than one sender.

SIGTERM and SIGINT stop the updater first (no new commands), then cancel a
running poll pass (what it committed stays, the rest is polled next time),
stop the jobs, then the sender (the send in flight completes, the rest stays
pending in the outbox), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes
from telegram.request import HTTPXRequest

from bot.bootstrap import open_database, retention_policy, running_poller
from bot.delivery.election import SenderSeat, holder_id
from bot.delivery.ratelimit import SendLimiter
from bot.delivery.replies import Replier
from bot.delivery.sender import Sender, SenderOptions
from bot.errors import ConfigError, StorageError
from bot.fetching.article import ArticleReader
from bot.fetching.client import FeedFetcher
from bot.health import TELEGRAM_OK_KEY
from bot.observability.logs import configure_logging
from bot.observability.metrics import Metrics
from bot.observability.server import ObservabilityServer, database_health, start_server
from bot.pipeline import PassReport, Poller
from bot.settings import Settings
from bot.storage.instance import InstanceLock
from bot.storage.repository import Database
from bot.storage.retention import prune
from bot.telegram.handlers import Handlers, register_menus
from bot.telegram.service import ChatService

log = logging.getLogger(__name__)

# APScheduler 3 defaults (misfire_grace_time=1s) silently skip a run that starts
# late, e.g. while the previous pass still runs. Runs must never overlap
# (max_instances=1), late runs are merged into one (coalesce) and still happen
# however late (misfire_grace_time=None).
POLL_JOB_KWARGS = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
HEARTBEAT_SECONDS = 60.0
LONG_POLL_SECONDS = 10
# Updates the handlers use: commands, the ⟨ ⟩ buttons, the bot joining or leaving a chat.
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# The send in flight may finish within this at SIGTERM; past it the sender is
# cancelled and the row is recovered at the next start. Keeps the whole stop
# under 10 s even when Telegram hangs on a send (its timeout is 15 s).
SENDER_GRACE_SECONDS = 5.0
# On a shared database, alerts a dead sender had claimed go out again after this
# (a worker's default, ``storywatch worker --claim-lease``).
SHARED_CLAIM_LEASE = 60.0
# A feed this process leased is another's to poll after this (``worker --feed-lease``).
SHARED_FEED_LEASE = 120.0
# The first pruning run after start: after the first poll pass, not in its way.
PRUNE_FIRST_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Mode:
    """How ``storywatch run`` serves. ``front_end``: commands only, feeds and alerts
    are the workers' (``storywatch worker``). ``webhook_url``: Telegram posts updates
    to python-telegram-bot's webhook server on ``listen:port``, which checks the
    secret token, instead of this process long polling (several front ends)."""

    front_end: bool = False
    webhook_url: str | None = None
    listen: str = "0.0.0.0"  # noqa: S104 - a webhook server must be reachable
    port: int = 8443
    secret: str | None = None


def run(settings: Settings, mode: Mode | None = None) -> int:
    """Run the bot until SIGTERM/SIGINT; returns the exit code."""
    mode = mode or Mode()
    token = settings.bot_token()  # ConfigError (exit 2) before anything starts
    configure_logging(settings.file.log_format, settings.file.log_level,
                      [token, *([mode.secret] if mode.secret else [])])
    # APScheduler logs every job run at INFO: one line a second at short intervals.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return asyncio.run(_main(settings, token, mode))
    except InvalidToken:
        log.error("Telegram refused the bot token: check TELEGRAM_BOT_TOKEN")
        return 2


def build_application(settings: Settings, token: str) -> Application:  # type: ignore[type-arg]
    """The PTB application, pointed at ``STORYWATCH_TELEGRAM_API_URL`` (and, for
    uploaded files, ``STORYWATCH_TELEGRAM_FILE_URL``).

    No ``rate_limiter``: PTB's AIORateLimiter retries on 429 by itself, which
    would resend behind the outbox's back. httpx's transport does not retry
    either (its default ``retries=0``), so each send is attempted exactly once
    and the sender decides what happens next.
    """
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.env.telegram_api_url)
        .base_file_url(settings.env.telegram_file_url)
        .request(HTTPXRequest(connection_pool_size=64, read_timeout=15.0, write_timeout=15.0))
        .get_updates_request(HTTPXRequest(read_timeout=LONG_POLL_SECONDS + 10.0))
        .concurrent_updates(16)  # handlers serialise per chat themselves
        .build()
    )


async def _initialize(
    app: Application,  # type: ignore[type-arg]
    stop: asyncio.Event,
    while_offline: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> bool:
    """``app.initialize()`` (getMe), retried while Telegram is unreachable.

    From the first failure until Telegram answers, ``while_offline`` runs as a
    task (the poll loop): feeds are polled and stored, alerts wait in the outbox.
    """
    delay = 1.0
    offline: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            try:
                await app.initialize()
                return True
            except InvalidToken:
                raise
            except (NetworkError, TelegramError) as exc:
                log.warning("cannot reach Telegram (%s); retrying in %.0fs", exc, delay)
                if offline is None and while_offline is not None:
                    offline = asyncio.create_task(while_offline(), name="storywatch-offline")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(60.0, delay * 2)
        return False
    finally:
        if offline is not None:
            offline.cancel()
            await asyncio.gather(offline, return_exceptions=True)


def shares_database(settings: Settings, mode: Mode) -> bool:
    """Whether other processes (workers, front ends) may use this database: a
    front end, or PostgreSQL. Otherwise the bot is alone on its SQLite file (the
    instance lock)."""
    return mode.front_end or settings.env.database_url is not None


def pass_runner(
    poller: Poller, *, shared: bool, holder: str
) -> Callable[[], Coroutine[Any, Any, PassReport]]:
    """One poll pass: every due feed for a bot alone on its database; on a shared one
    only the feeds this process leases, as a worker does, so a ``run`` beside
    workers polls no feed a second time in one interval."""
    if not shared:
        return poller.poll_due
    return functools.partial(
        poller.poll_leased, holder, lease=timedelta(seconds=SHARED_FEED_LEASE)
    )


async def _poll_offline(run_pass: Callable[[], Coroutine[Any, Any, PassReport]],
                        interval: float) -> None:
    """Poll passes every ``interval`` while the JobQueue cannot run (no Telegram yet)."""
    while True:
        started = time.monotonic()
        try:
            report = await run_pass()
            log.info("%s (%.1fs, Telegram not reached yet: alerts wait in the outbox)",
                     report.describe(), time.monotonic() - started)
        except StorageError as exc:
            log.error("poll pass stopped: %s", exc)
        except Exception:
            log.exception("poll pass failed")
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def _main(settings: Settings, token: str, mode: Mode) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Before the database is opened or in-flight alerts are recovered: a second
    # bot must not take the first one's claims for crashed ones.
    # Workers and front ends on one database coordinate through it (leases); the
    # lock keeps a second all-in-one bot off a SQLite file.
    shared = shares_database(settings, mode)
    with contextlib.nullcontext() if shared else InstanceLock(settings.database_path):
        db = await asyncio.to_thread(open_database, settings)
        # /track URL reads pages through its own fetcher: the feeds' SSRF rules, size cap
        # and deadline, without taking the feeds' connection slots.
        page_fetcher = FeedFetcher(settings.file.fetch, settings.env.allow_private_networks)
        try:
            async with running_poller(settings, db) as poller, page_fetcher:
                app = build_application(settings, token)
                limiter = SendLimiter()
                replier = Replier(app.bot, limiter)
                service = ChatService(db, poller, settings, pages=ArticleReader(page_fetcher))
                handlers = Handlers(
                    service, replier,
                    commands_per_minute=settings.file.limits.commands_per_minute,
                )
                handlers.install(app)
                holder = holder_id()
                offline = functools.partial(
                    _poll_offline, pass_runner(poller, shared=shared, holder=holder),
                    settings.env.poll_interval,
                )
                if not await _initialize(app, stop, offline):
                    return 0
                try:
                    await _serve(app, settings, db, poller, stop, limiter, replier, handlers,
                                 mode=mode, holder=holder)
                finally:
                    await app.shutdown()
        finally:
            db.close()
    log.info("stopped")
    return 0


async def _serve(
    app: Application,  # type: ignore[type-arg]
    settings: Settings,
    db: Database,
    poller: Poller,
    stop: asyncio.Event,
    limiter: SendLimiter,
    replier: Replier,
    handlers: Handlers | None = None,
    *,
    mode: Mode | None = None,
    holder: str | None = None,
) -> None:
    mode = mode or Mode()
    holder = holder or holder_id()
    await register_menus(app.bot, sorted(settings.env.admins))

    # Only a bot alone on its database (the SQLite instance lock) may take every
    # claim in flight for a crashed one. On a shared database they may be a live
    # worker's: claims are given back once they expire (the sender's claim lease).
    shared = shares_database(settings, mode)
    recovered = 0 if shared else await asyncio.to_thread(db.recover_in_flight)
    if recovered:
        log.info("%d alert(s) were in flight at the last stop; they go out again", recovered)
    metrics: Metrics | None = None
    endpoint: ObservabilityServer | None = None
    if settings.env.metrics_port is not None:
        metrics = Metrics()
        counts_gauge = metrics  # non-None, for the closure below

        def refresh_pending() -> None:
            counts = db.outbox_counts()
            counts_gauge.set_pending(counts["pending"] + counts["sending"])

        endpoint = start_server(
            settings.env.metrics_port, metrics,
            database_health(
                settings.database_path, settings.env.poll_interval,
                database_url=None if settings.env.database_url is None
                else settings.env.database_url.get_secret_value(),
            ),
            on_scrape=refresh_pending,
        )
    on_send = metrics.record_send if metrics else None

    async def make_sender() -> Sender:
        options = SenderOptions(claim_lease=SHARED_CLAIM_LEASE) if shared else None
        return Sender(db, app.bot, options=options, limiter=limiter, on_send=on_send)

    seat = SenderSeat(db, holder, make_sender, grace=SENDER_GRACE_SECONDS)
    poller.on_alerts = seat.wake
    seat_stop = asyncio.Event()
    # A front end leaves the outbox to the workers' sender.
    delivering = None if mode.front_end else asyncio.create_task(
        seat.run(seat_stop), name="storywatch-sender-seat")

    passes: set[asyncio.Task[PassReport]] = set()
    run_pass = pass_runner(poller, shared=shared, holder=holder)

    async def poll_job(context: ContextTypes.DEFAULT_TYPE) -> None:
        started = time.monotonic()
        # The pass runs as its own task so shutdown can cancel it: a feed that
        # trickles until its fetch deadline must not hold up SIGTERM. Cancelling
        # is safe: each feed's items and outbox rows commit in one transaction.
        task = asyncio.create_task(run_pass(), name="storywatch-poll")
        passes.add(task)
        try:
            report = await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this job itself was cancelled, not just the pass
            log.info("poll pass cancelled by shutdown; unfinished feeds are polled next time")
            return
        except StorageError as exc:
            log.error("poll pass stopped: %s", exc)
            return
        except Exception:
            log.exception("poll pass failed")
            return
        finally:
            passes.discard(task)
            seat.wake()
        if metrics is not None:
            metrics.record_pass(report, time.monotonic() - started)
        quiet = not (report.new_items or report.errors or report.alerts)
        log.log(logging.DEBUG if quiet else logging.INFO, "%s (%.1fs)", report.describe(),
                time.monotonic() - started)

    async def heartbeat_job(context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            await context.bot.get_me()
        except TelegramError as exc:
            log.warning("Telegram heartbeat failed: %s", exc)
            return
        await asyncio.to_thread(db.set_meta, TELEGRAM_OK_KEY, datetime.now(UTC).isoformat())

    policy = retention_policy(settings)

    async def prune_job(context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            report = await asyncio.to_thread(prune, db, datetime.now(UTC), policy)
        except StorageError as exc:
            log.error("pruning stopped: %s", exc)
            return
        log.info("retention: %s", report.describe())

    jq = app.job_queue
    if jq is None:  # pragma: no cover - the job-queue extra is a dependency
        raise ConfigError("python-telegram-bot was installed without its job queue")
    if not mode.front_end:
        jq.run_repeating(
            poll_job, interval=settings.env.poll_interval, first=0.5, name="poll",
            job_kwargs=dict(POLL_JOB_KWARGS),
        )
    jq.run_repeating(
        heartbeat_job, interval=HEARTBEAT_SECONDS, first=0.0, name="heartbeat",
        job_kwargs=dict(POLL_JOB_KWARGS),
    )
    jq.run_repeating(
        prune_job, interval=settings.file.retention.every_minutes * 60, first=PRUNE_FIRST_SECONDS,
        name="retention", job_kwargs=dict(POLL_JOB_KWARGS),
    )
    updater = app.updater
    assert updater is not None
    if mode.webhook_url is None:
        await updater.start_polling(
            timeout=LONG_POLL_SECONDS,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=False,
        )
    else:
        # PTB's server answers 403 to a post without Telegram's secret token header.
        await updater.start_webhook(
            listen=mode.listen, port=mode.port,
            url_path=urlsplit(mode.webhook_url).path.lstrip("/"),
            webhook_url=mode.webhook_url, secret_token=mode.secret,
            allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False,
        )
    await app.start()
    log.info(
        "storywatch running: polling feeds every %.0fs as @%s",
        settings.env.poll_interval, app.bot.username,
    )
    try:
        await stop.wait()
        log.info("stop signal received; shutting down")
    finally:
        if updater.running:
            await updater.stop()
        for task in list(passes):
            task.cancel()
        await asyncio.gather(*passes, return_exceptions=True)
        if handlers is not None:
            # app.stop() waits for every update in progress: an /addfeed of a
            # trickling feed would hold SIGTERM for its whole fetch deadline.
            await handlers.cancel_running()
        if app.running:
            await app.stop()
        await replier.stop()
        seat_stop.set()
        if delivering is not None:
            await delivering
        if endpoint is not None:
            endpoint.stop()
