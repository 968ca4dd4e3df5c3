"""Telegram update handlers: thin glue from an update to the service and back.

One message handler takes every command (``/cmd`` and ``/cmd@thisbot``, in
private chats and groups): parse (``commands``) -> rate limit -> act
(``ChatService``) -> reply. Commands of one chat are handled one at a time (a
per-chat lock) while other chats go on, so a slow ``/addfeed`` holds no one
else up. The error handler logs and answers something generic; the token
never appears in a log line (the logging setup redacts it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from weakref import WeakValueDictionary

from telegram import BotCommand, LinkPreviewOptions, Update
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot.delivery.ratelimit import CommandLimiter
from bot.telegram import commands as c
from bot.telegram.service import Caller, ChatService

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. Please try again in a minute."
NOT_A_COMMAND = (
    "I work with commands. Try /track Putin trip to China, or reply /track to an article. "
    "/help lists everything."
)


class Handlers:
    """The bot's update callbacks, bound to one service."""

    def __init__(
        self,
        service: ChatService,
        *,
        commands_per_minute: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._limiter = CommandLimiter(commands_per_minute)
        self._mono = monotonic
        self._locks: WeakValueDictionary[int, asyncio.Lock] = WeakValueDictionary()
        self._running: set[asyncio.Task[str]] = set()
        self._stopping = False

    async def cancel_running(self) -> None:
        """Shutdown: cancel the commands still being carried out (a slow
        /addfeed fetch) and take no new ones; returns when they have ended."""
        self._stopping = True
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        only_new = filters.UpdateType.MESSAGE
        app.add_handler(MessageHandler(only_new & filters.COMMAND, self.on_command))
        app.add_handler(
            MessageHandler(
                only_new & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                self.on_text,
            )
        )
        app.add_error_handler(self.on_error)

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.message
        if msg is None or msg.text is None:
            return
        raw = c.split_command(msg.text)
        if raw is None or not c.is_for_me(raw, context.bot.username):
            return  # another bot's command in a group
        chat = msg.chat
        lock = self._locks.get(chat.id)
        if lock is None:
            lock = self._locks[chat.id] = asyncio.Lock()
        async with lock:
            verdict = self._limiter.check(chat.id, self._mono())
            if verdict == "drop":
                return
            if verdict == "warn":
                wait = max(1, round(self._limiter.retry_in(chat.id, self._mono())))
                await self._reply(
                    context, chat.id,
                    "You're sending commands faster than I can take them. "
                    f"Please wait about {wait} s and try again.",
                )
                return
            reply_to = msg.reply_to_message
            reply_text = None
            if reply_to is not None:
                reply_text = reply_to.text or reply_to.caption
            who = Caller(
                chat_id=chat.id,
                user_id=msg.from_user.id if msg.from_user else None,
                chat_type=chat.type,
                chat_title=chat.title,
                reply_text=reply_text,
            )
            try:
                cmd = c.parse(raw, has_reply=bool(reply_text))
            except c.UsageError as exc:
                await self._reply(context, chat.id, str(exc))
                return
            log.info("command /%s from chat %s", raw.name, chat.id)
            if self._stopping:
                return
            task = asyncio.create_task(self._service.handle(cmd, who))
            self._running.add(task)
            try:
                text = await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
                log.info("command /%s from chat %s cut short by shutdown", raw.name, chat.id)
                return
            finally:
                self._running.discard(task)
            await self._reply(context, chat.id, text)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.message
        if msg is None:
            return
        if self._limiter.check(msg.chat.id, self._mono()) == "allow":
            await self._reply(context, msg.chat.id, NOT_A_COMMAND)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        log.error(
            "error while handling an update: %s: %s",
            type(err).__name__, err, exc_info=(type(err), err, err.__traceback__) if err else None,
        )
        if isinstance(update, Update) and update.effective_chat is not None:
            try:
                await self._reply(context, update.effective_chat.id, GENERIC_ERROR)
            except TelegramError:
                log.warning("could not tell chat %s about the error", update.effective_chat.id)

    @staticmethod
    async def _reply(context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str) -> None:
        await context.bot.send_message(
            chat_id, text, link_preview_options=LinkPreviewOptions(is_disabled=True)
        )


def bot_commands() -> list[BotCommand]:
    """The menu registered with setMyCommands."""
    return [BotCommand(spec.name, spec.description[:256]) for spec in c.COMMANDS]
