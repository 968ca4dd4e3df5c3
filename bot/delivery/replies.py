"""Command replies and notices: sent in order per chat, within Telegram's limits, never dropped.

The handlers queue a reply and return at once; one worker per chat sends that
chat's queue in order. Every send waits its turn on the :class:`SendLimiter`
the alert sender uses too, so replies and alerts share one budget (per chat,
per group, overall), and a chat flooding the bot only lengthens its own queue:
other chats have their own workers and their own per-chat windows.

Outcomes:

- 429 ``RetryAfter`` -> the chat is paused on the shared limiter (alerts to it
  wait too) and the same message is sent again after ``retry_after``;
- ``ChatMigrated`` -> the same message to the new supergroup id;
- 403 ``Forbidden`` or a chat that is gone -> nobody can read it: dropped, logged;
- an edit of a message that is gone or already shows the text -> nothing to do;
- network errors -> retried a few times with a growing pause, then logged; a send
  that may have arrived (its answer timed out or was cut off) is sent again once at
  most, and one that waited for a free connection (nothing went out) waits again
  without counting (``bot.delivery.transport``);
- any other refusal -> that reply dropped, logged; the chat's next ones still go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import telegram.error as tg
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
)

from bot.delivery.ratelimit import SendLimiter
from bot.delivery.sender import retry_after_seconds
from bot.delivery.transport import (
    CONNECTION_WAIT_SECONDS,
    may_have_arrived,
    waited_for_connection,
)

log = logging.getLogger(__name__)

# A reply waits for a free connection this many times (a second each) before it is
# given up like a network failure: a minute, longer than any send holds one.
MAX_CONNECTION_WAITS = 60

Buttons = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send, or (``edit_of`` set) one of ours to change; with
    ``document`` (file name, content), a file captioned ``text``."""

    chat_id: int
    text: str
    reply_to: int | None = None
    buttons: Buttons = ()
    edit_of: int | None = None
    document: tuple[str, bytes] | None = None
    photo: bytes | None = None  # a PNG, sent with sendPhoto and ``text`` as its caption


def keyboard(buttons: Buttons) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in buttons]])


class Replier:
    """Queues and sends replies; ``stop()`` waits for the queues to empty (with a grace)."""

    def __init__(
        self,
        bot: Bot,
        limiter: SendLimiter,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        network_retries: int = 3,
        network_pause: float = 1.0,
    ) -> None:
        self._bot = bot
        self._limiter = limiter
        self._mono = monotonic
        self._retries = network_retries
        self._pause = network_pause
        self._queues: dict[int, deque[Outgoing]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self.sent = 0
        self.rate_limited = 0

    def send(self, out: Outgoing, *, first: bool = False) -> None:
        """Queue ``out`` behind the chat's earlier messages (``first``: right after the
        one being sent, for a notice that must not wait behind a backlog); returns at once."""
        queue = self._queues.setdefault(out.chat_id, deque())
        if first and queue:
            queue.insert(1, out)  # queue[0] is in flight: the worker removes it when sent
        else:
            queue.append(out)
        if out.chat_id not in self._workers:
            self._workers[out.chat_id] = asyncio.create_task(
                self._work(out.chat_id), name=f"storywatch-replies-{out.chat_id}"
            )

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def stop(self, grace: float = 10.0) -> None:
        """Let queued replies go out for up to ``grace`` seconds, then give up on the rest."""
        workers = list(self._workers.values())
        if not workers:
            return
        _, late = await asyncio.wait(workers, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning("shutdown: %d queued repl(ies) not sent", self.pending())

    async def _work(self, chat_id: int) -> None:
        queue = self._queues[chat_id]
        try:
            while queue:
                try:
                    await self._deliver(queue[0])
                except Exception:  # a bug must not strand the chat's later replies
                    log.exception("reply to chat %s not sent", chat_id)
                queue.popleft()
        finally:
            self._workers.pop(chat_id, None)
            if not queue:
                self._queues.pop(chat_id, None)

    async def _turn(self, chat_id: int) -> None:
        # The limiter is shared with the alert sender and only answers "wait N s";
        # there is no event to wait on, so sleep and ask again.
        while True:
            wait = self._limiter.reserve(chat_id, self._mono())
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _deliver(self, out: Outgoing) -> None:
        chat_id = out.chat_id
        failures = waits = 0
        uncertain = False
        while True:
            await self._turn(chat_id)
            try:
                await self._call(chat_id, out)
                self.sent += 1
                return
            except tg.RetryAfter as exc:
                secs = retry_after_seconds(exc) + 0.5
                self.rate_limited += 1
                self._limiter.block(chat_id, self._mono() + secs)
                log.warning("429 on a reply to chat %s: sending it again in %.1fs", chat_id, secs)
            except tg.ChatMigrated as exc:
                chat_id = exc.new_chat_id
            except tg.Forbidden as exc:
                log.info("reply to chat %s not delivered: %s", chat_id, exc.message)
                return
            except tg.BadRequest as exc:
                log.info("reply to chat %s refused: %s", chat_id, exc.message)
                return
            except tg.NetworkError as exc:
                if waited_for_connection(exc) and waits < MAX_CONNECTION_WAITS:
                    # Nothing went out, and not for a network fault: our connections
                    # were busy with other sends, which end within their time-outs.
                    waits += 1
                    await asyncio.sleep(CONNECTION_WAIT_SECONDS)
                    continue
                if out.edit_of is None and may_have_arrived(exc):
                    # It may be in the chat already: one more copy at most, not one
                    # per retry (an edit can be repeated without showing twice).
                    if uncertain:
                        log.warning("reply to chat %s may have arrived; not sent again: %s",
                                    chat_id, exc)
                        return
                    uncertain = True
                failures += 1
                if failures > self._retries:
                    log.warning("reply to chat %s lost to network errors: %s", chat_id, exc)
                    return
                await asyncio.sleep(self._pause * 2 ** (failures - 1))
            except tg.TelegramError as exc:  # none of the above: this reply cannot go
                log.warning("reply to chat %s refused: %s", chat_id, exc.message)
                return

    async def _call(self, chat_id: int, out: Outgoing) -> None:
        markup = keyboard(out.buttons)
        if out.edit_of is not None:
            try:
                await self._bot.edit_message_text(
                    out.text, chat_id=chat_id, message_id=out.edit_of, reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            except tg.BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    raise
            return
        reply = (
            ReplyParameters(out.reply_to, allow_sending_without_reply=True)
            if out.reply_to is not None else None
        )
        if out.document is not None:
            name, content = out.document
            await self._bot.send_document(
                chat_id, InputFile(content, filename=name), caption=out.text or None,
                reply_parameters=reply, reply_markup=markup,
            )
            return
        if out.photo is not None:
            await self._bot.send_photo(
                chat_id, out.photo, caption=out.text or None, reply_parameters=reply,
                reply_markup=markup,
            )
            return
        await self._bot.send_message(
            chat_id, out.text, reply_parameters=reply, reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )
