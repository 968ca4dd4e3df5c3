"""Sending digests: part by part, each part recorded before the next, within Telegram's limits.

The :class:`~bot.delivery.sender.Sender` owns one :class:`DigestCourier` and
calls it on every pass: :meth:`DigestCourier.build` turns the held alerts whose
digest time has come into digests (``storage.digests``), then
:meth:`DigestCourier.deliver_due` claims due digests and sends what is left of
each. The outcomes mirror the alerts' (``bot.delivery.sender``):

- a part accepted -> ``digest_part_sent`` (its index and message id, one write);
  the last one marks the digest and its outbox rows 'sent';
- held by the limiter, 429 ``RetryAfter`` or shutdown -> the digest is given
  back, pending, not counted as an attempt, and resumes at the next unsent part;
- 403 -> the chat is deactivated (its digests dropped, on record);
- ``ChatMigrated`` -> the chat moves and the same part goes to the new id;
- 400 about entities -> that part as plain text; other 400s fail the digest;
- a time-out or a connection lost after the request went out -> the part may
  have arrived: retried once after a delay, and if that is uncertain too, taken
  as delivered rather than sent a third time;
- timed out waiting for a free connection of our own pool -> nothing went out:
  given back for a second, not counted;
- other errors -> retried with backoff, failed after ``max_attempts``.

A part delivered whose record could not be written (a lock held past every
retry) is kept in memory and recorded before anything else, and its digest is
kept from lease recovery meanwhile: a delivered part is never resent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.delivery.digest import as_plain
from bot.delivery.transport import (
    CONNECTION_BUSY,
    CONNECTION_WAIT_SECONDS,
    may_have_arrived,
    waited_for_connection,
)
from bot.errors import StorageError
from bot.storage.digests import DigestJob
from bot.storage.ports import SenderStore

log = logging.getLogger(__name__)

UNCERTAIN_KEY = "digest.uncertain.{id}.{part}"
CLAIM_BATCH = 20


class DigestCourier:
    """Builds and sends digests for a :class:`~bot.delivery.sender.Sender`."""

    def __init__(
        self,
        db: SenderStore,
        bot: Bot,
        *,
        wait_turn: Callable[[int], Awaitable[float]],
        stopping: Callable[[], bool],
        utcnow: Callable[[], datetime],
        send_timeout: float,
        uncertain_delay: float,
        backoff: Callable[[int], float],
        max_attempts: int,
        on_send: Callable[[bool, float], None] | None = None,
        monotonic: Callable[[], float],
        block: Callable[[int, float], None],
    ) -> None:
        self._db = db
        self._bot = bot
        self._wait_turn = wait_turn
        self._stopping = stopping
        self._now = utcnow
        self._timeout = send_timeout
        self._uncertain_delay = uncertain_delay
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._on_send = on_send
        self._mono = monotonic
        self._block = block
        self._in_flight: set[int] = set()
        # (digest, part) delivered but not recorded yet -> (message id, when)
        self._unrecorded: dict[tuple[int, int], tuple[int | None, datetime]] = {}
        self.parts_sent = 0

    def keep(self) -> set[int]:
        """Digests lease recovery must leave alone: being sent, or awaiting a record."""
        return self._in_flight | {d for d, _ in self._unrecorded}

    async def record_unrecorded(self) -> None:
        """Write what was delivered but could not be recorded (raises while it still fails)."""
        for (digest_id, index), (message_id, when) in sorted(self._unrecorded.items()):
            await asyncio.to_thread(self._db.digest_part_sent, digest_id, index,
                                    message_id=message_id, now=when)
            del self._unrecorded[(digest_id, index)]
            log.info("digest %s part %d: delivery recorded after a storage fault",
                     digest_id, index + 1)

    async def build(self) -> int:
        built = await asyncio.to_thread(self._db.build_due_digests, self._now())
        if built:
            log.info("built %d digest(s): %s", len(built), built)
        return len(built)

    async def deliver_due(self) -> int:
        """Claim the due digests and send them (each chat's in parallel); how many."""
        if self._stopping():
            return 0
        jobs = await asyncio.to_thread(self._db.claim_due_digests, self._now(), CLAIM_BATCH)
        await asyncio.gather(*(self._guarded(job) for job in jobs))
        return len(jobs)

    async def _guarded(self, job: DigestJob) -> None:
        self._in_flight.add(job.id)
        try:
            await self._deliver(job)
        except StorageError:
            raise
        except Exception as exc:  # a bug must not leave the digest 'sending' forever
            log.exception("unexpected error sending digest %s", job.id)
            await self._retry_or_fail(job, f"internal error: {type(exc).__name__}")
        finally:
            self._in_flight.discard(job.id)

    async def _give_back(self, job: DigestJob, delay: float, why: str,
                         *, counted: bool = False) -> None:
        await asyncio.to_thread(
            self._db.release_digest, job.id,
            not_before=self._now() + timedelta(seconds=delay), error=why, counted=counted,
        )

    async def _deliver(self, job: DigestJob) -> None:
        chat_id = job.chat_id
        index = job.parts_sent
        as_html = True
        while index < len(job.parts):
            if self._stopping():
                await self._give_back(job, 0.0, "held: shutting down")
                return
            wait = await self._wait_turn(chat_id)
            if wait > 0:
                await self._give_back(job, wait, "held: rate limit")
                return
            part = job.parts[index] if as_html else as_plain(job.parts[index])
            started = self._mono()
            ok = False
            try:
                message_id = await self._send(chat_id, part, as_html)
                ok = True
            except RetryAfter as exc:
                # Imported here: the sender module imports this one.
                from bot.delivery.sender import retry_after_seconds

                secs = retry_after_seconds(exc) + 0.5
                self._block(chat_id, self._mono() + secs)
                log.info("429 in the middle of digest %s (part %d of %d): waiting %.1fs",
                         job.id, index + 1, len(job.parts), secs)
                await self._give_back(job, secs, f"429: retry after {secs:.0f}s")
                return
            except ChatMigrated as exc:
                await asyncio.to_thread(self._db.migrate_chat, chat_id, exc.new_chat_id)
                chat_id = exc.new_chat_id
                continue
            except Forbidden as exc:
                await asyncio.to_thread(self._db.deactivate_chat, chat_id,
                                        f"403: {exc.message}"[:300])
                return
            except BadRequest as exc:
                m = exc.message.lower()
                if as_html and ("entit" in m or "can't parse" in m):
                    log.warning("Telegram refused a digest's HTML (%s); sending plain text",
                                exc.message)
                    as_html = False
                    continue
                if "chat not found" in m:
                    await asyncio.to_thread(self._db.deactivate_chat, chat_id,
                                            f"400: {exc.message}"[:300])
                    return
                await asyncio.to_thread(self._db.fail_digest, job.id, f"400: {exc.message}")
                return
            except NetworkError as exc:  # time-outs included
                if waited_for_connection(exc):
                    await self._give_back(job, CONNECTION_WAIT_SECONDS, CONNECTION_BUSY)
                    return
                if not may_have_arrived(exc):
                    await self._retry_or_fail(job, f"network: {exc.message}")
                    return
                if not await self._uncertain(job, index):
                    return
                message_id = None
            except TelegramError as exc:
                await self._retry_or_fail(job, f"telegram: {exc.message}")
                return
            finally:
                if self._on_send is not None:
                    self._on_send(ok, self._mono() - started)
            if not await self._record(job.id, index, message_id):
                return
            self.parts_sent += 1
            index += 1
            as_html = True

    async def _record(self, digest_id: int, index: int, message_id: int | None) -> bool:
        now = self._now()
        try:
            await asyncio.to_thread(self._db.digest_part_sent, digest_id, index,
                                    message_id=message_id, now=now)
        except StorageError as exc:
            log.error("digest %s part %d was delivered but cannot be recorded yet: %s",
                      digest_id, index + 1, exc)
            self._unrecorded[(digest_id, index)] = (message_id, now)
            return False
        return True

    async def _uncertain(self, job: DigestJob, index: int) -> bool:
        """A part's send timed out: True to take it as delivered (it was retried
        once already), False after scheduling the one retry."""
        key = UNCERTAIN_KEY.format(id=job.id, part=index)
        if await asyncio.to_thread(self._db.get_meta, key) is not None:
            log.warning("digest %s part %d timed out twice; taking it as delivered",
                        job.id, index + 1)
            return True
        await asyncio.to_thread(self._db.set_meta, key, self._now().isoformat())
        log.warning("digest %s part %d timed out; one retry in %.0fs", job.id, index + 1,
                    self._uncertain_delay)
        await self._give_back(job, self._uncertain_delay,
                              "uncertain: a part timed out and may have arrived", counted=True)
        return False

    async def _retry_or_fail(self, job: DigestJob, error: str) -> None:
        if job.attempts >= self._max_attempts:
            log.warning("digest %s failed after %d attempts: %s", job.id, job.attempts, error)
            await asyncio.to_thread(self._db.fail_digest, job.id, error)
            return
        await self._give_back(job, self._backoff(job.attempts), error[:300], counted=True)

    async def _send(self, chat_id: int, text: str, as_html: bool) -> int:
        msg = await self._bot.send_message(
            chat_id, text, parse_mode=ParseMode.HTML if as_html else None,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            read_timeout=self._timeout, write_timeout=self._timeout,
        )
        return msg.message_id
