"""The sender: drains the durable outbox to Telegram, within Telegram's limits.

Rows are claimed in batches (``claim_due_alerts`` marks them 'sending'), one
worker per chat sends them in order, and every outcome is written back.

The unit is a message, not a row: the rows of one chat, item and kind (an item
that matched several storylines the chat follows) are claimed together and go
out as ONE message naming every storyline; each outcome below is written for
all of them at once (sent with the same message id, retried, failed, given back):

- sent -> ``mark_sent`` (an 'edit' row edits its parent's message to add
  "+N more: Source1, Source2" instead of sending a new message);
- held by our own limiter, 429 ``RetryAfter``, or shutdown -> ``release_claim``
  with a ``not_before``: pending again, no attempt counted, nothing lost;
- 403 ``Forbidden`` -> ``deactivate_chat`` (its pending rows are dropped, on record);
- ``ChatMigrated`` -> ``migrate_chat`` and the same text to the new id;
- 400 about entities -> the plain-text rendering, once;
- ``TimedOut``, or the connection dropped after the request went out -> the
  message may have arrived: one retry after a delay, noted in ``meta`` as
  uncertain so possible duplicates can be counted, never more (an edit cannot
  show twice: it is retried like any failed call);
- timed out waiting for a free connection of our own pool -> nothing went out:
  ``release_claim`` for a second, like a hold of the limiter
  (``bot.delivery.transport`` tells these apart);
- other network errors and 5xx -> retry with exponential backoff, ``mark_failed``
  after ``max_attempts``.

Digests (issue 17) go out through the :class:`DigestCourier` each pass builds
and drains (``bot.delivery.digest_sender``), under the same limiter.

Database calls are short and run in a thread; the Bot is python-telegram-bot's,
with no rate limiter or retry of its own (those would double-send).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.delivery.buttons import ButtonState, Row, alert_keyboard
from bot.delivery.digest_sender import DigestCourier
from bot.delivery.ratelimit import SendLimiter
from bot.delivery.render import AlertView, Hit, render_html, render_plain, summary_view
from bot.delivery.transport import (
    CONNECTION_BUSY,
    CONNECTION_WAIT_SECONDS,
    may_have_arrived,
    waited_for_connection,
)
from bot.errors import StorageError
from bot.models import Item
from bot.storage.ports import SenderStore
from bot.storage.repository import OutboxEntry

log = logging.getLogger(__name__)

UNCERTAIN_KEY = "outbox.uncertain.{id}"
UNCERTAIN_TOTAL_KEY = "delivery.uncertain_resends"
SUMMARY_TITLES = 8  # latest titles a storm summary lists


@dataclass(frozen=True, slots=True)
class SenderOptions:
    batch: int = 50
    max_attempts: int = 6
    send_timeout: float = 15.0  # read timeout of one send; past it the outcome is uncertain
    uncertain_delay: float = 30.0  # wait before the single retry of a timed-out send
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    max_hold: float = 3.0  # longer limiter waits give the row back instead of holding it
    idle_poll: float = 1.0  # look for due rows this often even without a wake-up
    # A claim older than this, not in flight here, is given back (see run()).
    claim_lease: float = 300.0
    lease_check: float = 30.0  # how often to look for expired claims


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 deprecates the int form; we accept both
        warnings.simplefilter("ignore")
        value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return max(0.0, value.total_seconds())
    return max(0.0, float(value))


def messages_of(rows: Sequence[OutboxEntry]) -> list[list[OutboxEntry]]:
    """Claimed rows grouped into the messages that deliver them, in the order of
    each message's first row: one per chat, item and kind, and for an edit per
    message it edits (rows edit one message only if their parents share it)."""
    groups: dict[tuple[int, int, str, int | None], list[OutboxEntry]] = {}
    for e in rows:
        edits = e.parent_message_id if e.kind == "edit" else None
        groups.setdefault((e.chat_id, e.item_id, e.kind, edits), []).append(e)
    return list(groups.values())


def view_of(rows: Sequence[OutboxEntry], more: Sequence[Item] = ()) -> AlertView:
    """The alert naming every storyline of ``rows`` (rows of one item), each once."""
    hits: dict[int, Hit] = {}
    for e in rows:
        hits.setdefault(e.storyline_id, Hit(e.storyline_title, e.reason, e.storyline_id))
    return AlertView.of(list(hits.values()), rows[0].item, more)


def _is_entity_error(exc: BadRequest) -> bool:
    m = exc.message.lower()
    return "parse entities" in m or "can't parse" in m or "entity" in m or "entities" in m


class Sender:
    """Drains the outbox; construct once, ``await run()`` in a task, ``await stop()`` to end."""

    def __init__(
        self,
        db: SenderStore,
        bot: Bot,
        *,
        options: SenderOptions | None = None,
        limiter: SendLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_send: Callable[[bool, float], None] | None = None,
    ) -> None:
        self._db = db
        self._on_send = on_send  # metrics hook: (delivered, seconds) per attempt
        self._bot = bot
        self.options = options or SenderOptions()
        self._limiter = limiter or SendLimiter()
        self._mono = monotonic
        self._now = utcnow
        self._wake = asyncio.Event()
        # Chat workers run concurrently: the uncertain-resend counter's
        # read-then-write must not interleave, or increments are lost.
        self._count_lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.sent_count = 0
        # Delivered, but writing 'sent' failed (lock past every retry, full
        # disk): outbox id -> (when, message id). Retried before anything else,
        # and kept out of lease recovery, so a delivered alert is never resent.
        self._unrecorded: dict[int, tuple[datetime, int | None]] = {}
        self._next_lease_check = 0.0
        o = self.options
        self.digests = DigestCourier(
            db, bot, wait_turn=self._wait_turn, stopping=lambda: self._stopping,
            utcnow=utcnow, send_timeout=o.send_timeout, uncertain_delay=o.uncertain_delay,
            backoff=lambda n: min(o.backoff_max, o.backoff_base * 2 ** max(0, n - 1)),
            max_attempts=o.max_attempts, on_send=on_send, monotonic=monotonic,
            block=self._limiter.block,
        )

    # -- lifecycle ----------------------------------------------------------

    def wake(self) -> None:
        """New rows may be due (the poll job calls this after a pass)."""
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="storywatch-sender")
        return self._task

    async def stop(self, grace: float = 20.0) -> None:
        """Finish the sends in flight, give back what was not started, then return.

        Past ``grace`` seconds the task is cancelled; rows it left 'sending' are
        recovered by ``recover_in_flight`` at the next start.
        """
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            log.warning("sender did not finish in %.0fs; cancelling", grace)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming, so a wake-up during the pass is not lost
            try:
                await self._housekeeping()
                handled = await self.drain_once()
            except StorageError as exc:
                log.error("sender paused: %s; retrying in %.0fs", exc, self.options.idle_poll)
                handled = 0
            except Exception:
                log.exception("sender pass failed; retrying shortly")
                handled = 0
            if handled == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.idle_poll)

    async def _housekeeping(self) -> None:
        """Record delivered alerts whose 'sent' could not be written (raising, so no
        new claims are made, while that still fails), then give back expired claims."""
        for outbox_id, (when, message_id) in list(self._unrecorded.items()):
            await asyncio.to_thread(self._db.mark_sent, outbox_id, now=when,
                                    message_id=message_id)
            del self._unrecorded[outbox_id]
            log.info("outbox row %s: delivery recorded after a storage fault", outbox_id)
        await self.digests.record_unrecorded()
        await self.digests.build()
        if self._mono() >= self._next_lease_check:
            self._next_lease_check = self._mono() + self.options.lease_check
            recovered = await asyncio.to_thread(
                self._db.recover_expired_claims, self._now(),
                timedelta(seconds=self.options.claim_lease), keep=set(self._unrecorded),
                keep_digests=self.digests.keep(),
            )
            if recovered:
                log.warning("%d claimed alert(s) outlived their lease; pending again", recovered)

    async def _mark_sent(self, ids: list[int], message_id: int | None) -> None:
        now = self._now()
        try:
            await asyncio.to_thread(self._db.mark_sent, ids, now=now, message_id=message_id)
        except StorageError as exc:
            log.error("outbox rows %s were delivered but cannot be recorded yet: %s", ids, exc)
            for outbox_id in ids:
                self._unrecorded[outbox_id] = (now, message_id)

    # -- one pass -----------------------------------------------------------

    async def drain_once(self) -> int:
        """Claim one batch of due rows and the due digests and deliver them; returns how
        many rows and digests were claimed."""
        entries = await asyncio.to_thread(
            self._db.claim_due_alerts, self._now(), self.options.batch
        )
        by_chat: dict[int, list[list[OutboxEntry]]] = {}
        for group in messages_of(entries):
            by_chat.setdefault(group[0].chat_id, []).append(group)
        digests = asyncio.create_task(self.digests.deliver_due())
        await asyncio.gather(*(self._chat_worker(groups) for groups in by_chat.values()))
        return len(entries) + await digests

    async def _chat_worker(self, groups: list[list[OutboxEntry]]) -> None:
        for index, group in enumerate(groups):
            try:
                keep_going = await self._deliver(group)
            except Exception as exc:  # a bug must not leave the rows 'sending' forever
                log.exception("unexpected error delivering outbox rows %s", _ids(group))
                await self._retry_or_fail(group, f"internal error: {type(exc).__name__}")
                keep_going = True
            if not keep_going:
                # Keep the chat's order: its later rows wait as long as the limiter says.
                rest = [e for later in groups[index + 1 :] for e in later]
                wait = self._limiter.delay(group[0].chat_id, self._mono())
                await self._give_back(rest, wait, "held: an earlier alert to this chat waits")
                return

    async def _give_back(self, rows: list[OutboxEntry], delay: float, why: str) -> None:
        if not rows:
            return
        not_before = self._now() + timedelta(seconds=delay)
        await asyncio.to_thread(
            self._db.release_claim, _ids(rows), not_before=not_before, error=why
        )

    async def _wait_turn(self, chat_id: int) -> float:
        """Wait for the limiter; 0.0 when granted, else how long the caller should defer."""
        while True:
            wait = self._limiter.reserve(chat_id, self._mono())
            if wait <= 0:
                return 0.0
            if self._stopping or wait > self.options.max_hold:
                return wait
            await asyncio.sleep(wait)

    # -- one message ----------------------------------------------------------

    async def _deliver(self, group: list[OutboxEntry]) -> bool:
        """Deliver one message (the rows of ``group``); False means: stop this chat's
        worker for this batch."""
        entry = group[0]
        ids = _ids(group)
        if self._stopping:
            await self._give_back(group, 0.0, "held: shutting down")
            return False
        wait = await self._wait_turn(entry.chat_id)
        if wait > 0:
            await self._give_back(group, wait, "held: rate limit")
            return False

        edit_of: int | None = None
        view = view_of(group)
        shown = group  # the rows the message names (its buttons act on them)
        if entry.summary_count > 0:
            latest = await asyncio.to_thread(
                self._db.held_items, entry.chat_id, entry.storyline_id,
                entry.queued_at or self._now(), SUMMARY_TITLES,
            )
            view = summary_view(entry.storyline_title, entry.summary_count, latest)
        elif entry.kind == "edit" and entry.parent_id is not None:
            # The parent's message may name several storylines: redraw all of them,
            # with every item collapsed into any of them.
            parents = await asyncio.to_thread(self._db.message_rows, entry.parent_id)
            if parents and entry.parent_message_id is not None:
                more = await asyncio.to_thread(self._db.duplicates_of, _ids(parents))
                view = view_of(parents, more)
                edit_of = entry.parent_message_id
                shown = parents
            # else the parent never reached the chat (failed): tell this as a new alert.
        # Times in the alert are the chat's own (/settings tz).
        view = replace(view, tz=entry.tz)

        chat_id = entry.chat_id
        markup = await self._buttons(shown)
        as_html = True
        for _ in range(3):  # at most: migrate once, fall back to plain once
            text = render_html(view) if as_html else render_plain(view)
            started = self._mono()
            ok = False
            try:
                message_id = await self._call(chat_id, text, as_html, edit_of, markup)
                ok = True
            except RetryAfter as exc:
                secs = retry_after_seconds(exc) + 0.5
                self._limiter.block(chat_id, self._mono() + secs)
                log.info("429 for chat %s: waiting %.1fs", chat_id, secs)
                await self._give_back(group, secs, f"429: retry after {secs:.0f}s")
                return False
            except ChatMigrated as exc:
                log.info("chat %s migrated to %s", chat_id, exc.new_chat_id)
                await asyncio.to_thread(self._db.migrate_chat, chat_id, exc.new_chat_id)
                chat_id = exc.new_chat_id
                if edit_of is not None:  # message ids do not carry over
                    await asyncio.to_thread(
                        self._db.mark_failed, ids, "chat migrated; cannot edit"
                    )
                    return False
                continue
            except Forbidden as exc:
                log.info("chat %s refuses the bot (%s): deactivating", chat_id, exc.message)
                await asyncio.to_thread(
                    self._db.deactivate_chat, chat_id, f"403: {exc.message}"[:300]
                )
                return False
            except BadRequest as exc:
                if as_html and _is_entity_error(exc):
                    log.warning("Telegram refused our HTML (%s); sending plain text", exc.message)
                    as_html = False
                    continue
                return await self._bad_request(group, chat_id, edit_of, exc)
            except NetworkError as exc:  # time-outs included
                if waited_for_connection(exc):
                    log.info("every connection to Telegram is busy; chat %s waits %.0fs",
                             chat_id, CONNECTION_WAIT_SECONDS)
                    await self._give_back(group, CONNECTION_WAIT_SECONDS, CONNECTION_BUSY)
                    return False
                if edit_of is None and may_have_arrived(exc):
                    await self._uncertain(group)
                else:  # sent nothing, or an edit, which cannot show twice
                    await self._retry_or_fail(group, f"network: {exc.message}")
                return True
            except TelegramError as exc:
                await self._retry_or_fail(group, f"telegram: {exc.message}")
                return True
            finally:
                if self._on_send is not None:
                    self._on_send(ok, self._mono() - started)
            await self._mark_sent(ids, message_id)
            self.sent_count += 1
            return True
        await self._retry_or_fail(group, "gave up after migration and plain-text fallback")
        return True

    async def _buttons(self, rows: Sequence[OutboxEntry]) -> InlineKeyboardMarkup:
        """The keyboard under the alert of ``rows`` (👍 👎 🔕 Stop following), as the
        chat left it: an edit for another outlet redraws it with what was recorded."""
        first = rows[0]
        sids = [r.storyline_id for r in rows]
        states: dict[int, ButtonState] = {}
        if first.message_id is not None:
            # A message already in the chat (redrawn for "+N more"): the chat may have
            # pressed its buttons. A new alert has nothing recorded yet: no database
            # round trip on the hot path.
            marks = await asyncio.to_thread(
                self._db.alert_marks, first.chat_id, first.item_id, sids, self._now()
            )
            states = {sid: ButtonState(v, muted, following)
                      for sid, (v, muted, following) in marks.items()}
        return markup_of(alert_keyboard(first.id, sids, states,
                                        feedback=first.summary_count == 0))

    async def _call(
        self, chat_id: int, text: str, as_html: bool, edit_of: int | None,
        markup: InlineKeyboardMarkup | None = None,
    ) -> int:
        parse_mode = ParseMode.HTML if as_html else None
        t = self.options.send_timeout
        no_preview = LinkPreviewOptions(is_disabled=True)
        if edit_of is not None:
            result = await self._bot.edit_message_text(
                text, chat_id=chat_id, message_id=edit_of, parse_mode=parse_mode,
                link_preview_options=no_preview, reply_markup=markup,
                read_timeout=t, write_timeout=t,
            )
            return result.message_id if isinstance(result, Message) else edit_of
        msg = await self._bot.send_message(
            chat_id, text, parse_mode=parse_mode, link_preview_options=no_preview,
            reply_markup=markup, read_timeout=t, write_timeout=t,
        )
        return msg.message_id

    async def _bad_request(
        self, group: list[OutboxEntry], chat_id: int, edit_of: int | None, exc: BadRequest
    ) -> bool:
        m = exc.message.lower()
        ids = _ids(group)
        if edit_of is not None and "not modified" in m:
            # A later edit already showed this (or more): nothing to change.
            await self._mark_sent(ids, edit_of)
            return True
        if "chat not found" in m:
            await asyncio.to_thread(self._db.deactivate_chat, chat_id, f"400: {exc.message}")
            return False
        log.warning("outbox rows %s refused: %s", ids, exc.message)
        await asyncio.to_thread(self._db.mark_failed, ids, f"400: {exc.message}"[:300])
        return True

    async def _uncertain(self, group: list[OutboxEntry]) -> None:
        """A send timed out or lost its answer: it may have arrived. Retry once after a
        delay, never more. The message is on record under its first row's id."""
        ids = _ids(group)
        key = UNCERTAIN_KEY.format(id=ids[0])
        seen = await asyncio.to_thread(self._db.get_meta, key)
        if seen is not None:
            log.warning("outbox rows %s timed out again; not resending", ids)
            await asyncio.to_thread(
                self._db.mark_failed, ids,
                "uncertain: timed out twice; it may have been delivered",
            )
            return
        await asyncio.to_thread(self._db.set_meta, key, self._now().isoformat())
        async with self._count_lock:
            total = await asyncio.to_thread(self._db.get_meta, UNCERTAIN_TOTAL_KEY)
            await asyncio.to_thread(
                self._db.set_meta, UNCERTAIN_TOTAL_KEY, str(int(total or 0) + 1)
            )
        log.warning("outbox rows %s timed out; one retry in %.0fs", ids,
                    self.options.uncertain_delay)
        await asyncio.to_thread(
            self._db.mark_retry, ids,
            not_before=self._now() + timedelta(seconds=self.options.uncertain_delay),
            error="uncertain: send timed out and may have been delivered; retrying once",
        )

    async def _retry_or_fail(self, group: list[OutboxEntry], error: str) -> None:
        error = error[:300]
        ids = _ids(group)
        attempts = max(e.attempts for e in group)
        if attempts >= self.options.max_attempts:
            log.warning("outbox rows %s failed after %d attempts: %s", ids, attempts, error)
            await asyncio.to_thread(self._db.mark_failed, ids, error)
            return
        delay = min(self.options.backoff_max,
                    self.options.backoff_base * 2 ** max(0, attempts - 1))
        await asyncio.to_thread(
            self._db.mark_retry, ids,
            not_before=self._now() + timedelta(seconds=delay), error=error,
        )


def markup_of(rows: Sequence[Row]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=d) for text, d in row] for row in rows]
    )


def _ids(rows: Sequence[OutboxEntry]) -> list[int]:
    return [e.id for e in rows]
