"""Telegram update handlers: thin glue from an update to the service and back.

- Commands (``/cmd`` and ``/cmd@thisbot``, in private chats and groups): parse
  (``commands``) -> per-chat command budget -> in groups, ``getChatMember`` for
  commands that change the group's storylines -> act (``ChatService``) -> queue
  the reply (``Replier``), quoting the command in groups.
- Documents in private chats: an admin's OPML feed list, downloaded (``files``) and
  imported (``ChatService.import_opml``); anyone else is told no before any download.
- Inline buttons (``callback_query``): the ⟨ ⟩ pages of long lists, and the
  delivery choices under ``/settings`` (group administrators only, in groups).
- ``my_chat_member``: a welcome when the bot joins a group; a chat that removes
  or blocks the bot is marked inactive.
- A group becoming a supergroup (``migrate_to_chat_id``): its storylines,
  subscriptions and settings move to the new id at once.

Commands of one chat are handled one at a time (a per-chat lock) while other
chats go on, and handlers never wait for a send: replies leave through the
replier's per-chat queues, so a flooding chat holds up no one else. The error
handler logs and answers something generic; the token never appears in a log
line (the logging setup redacts it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any
from weakref import WeakValueDictionary

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
    Chat,
    Message,
    Update,
)
from telegram.constants import ChatMemberStatus
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.delivery.buttons import AlertPress, parse_alert_data
from bot.delivery.ratelimit import CommandLimiter
from bot.delivery.replies import Outgoing, Replier
from bot.delivery.sender import markup_of
from bot.parsing.opml import MAX_OPML_BYTES
from bot.telegram import commands as c
from bot.telegram.files import DownloadError, download
from bot.telegram.pages import parse_page_data
from bot.telegram.service import GROUP_ADMINS_ONLY, SETTINGS_BUTTON, Caller, ChatService, Reply
from bot.telegram.steering import parse_track_data

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. Please try again in a minute."
NOT_A_COMMAND = (
    "I work with commands. Try /track Putin trip to China, or reply /track to an article. "
    "/help lists everything."
)
CANNOT_CHECK_ADMIN = (
    "I couldn't check with Telegram whether you administer this group, so I changed "
    "nothing. Please try again in a minute."
)
PRESENT = frozenset({ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR,
                     ChatMemberStatus.OWNER, ChatMemberStatus.RESTRICTED})
GONE = frozenset({ChatMemberStatus.LEFT, ChatMemberStatus.BANNED})
GROUP_ADMINS = frozenset({ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER})


async def _answer(query: CallbackQuery, text: str | None) -> None:
    """Answer a button press (the toast); a refusal is logged, not raised.

    The press was acted on before its answer: a query Telegram holds too old to
    answer (the bot back to a backlog of presses), a 429 or a network fault must not
    stop the redraw that follows, nor reach the chat as "something went wrong"."""
    try:
        await query.answer(text)
    except TelegramError as exc:
        log.warning("could not answer a button press: %s", exc.message)


class Handlers:
    """The bot's update callbacks, bound to one service and one replier."""

    def __init__(
        self,
        service: ChatService,
        replier: Replier,
        *,
        commands_per_minute: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._replier = replier
        self._limiter = CommandLimiter(commands_per_minute)
        self._mono = monotonic
        self._locks: WeakValueDictionary[int, asyncio.Lock] = WeakValueDictionary()
        self._running: set[asyncio.Task[Reply]] = set()
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
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        app.add_handler(MessageHandler(only_new & filters.COMMAND, self.on_command))
        app.add_handler(
            MessageHandler(
                only_new & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                self.on_text,
            )
        )
        app.add_handler(
            MessageHandler(
                only_new & filters.ChatType.PRIVATE & filters.Document.ALL, self.on_document
            )
        )
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(ChatMemberHandler(self.on_membership, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.on_error)

    def _say(self, chat: Chat, text: str, msg: Message | None = None,
             reply: Reply | None = None, *, first: bool = False) -> None:
        # In groups a reply quotes the command it answers: several people talk there.
        quote = msg.message_id if msg is not None and chat.type != Chat.PRIVATE else None
        self._replier.send(
            Outgoing(chat.id, text, quote, reply.buttons if reply else (),
                     document=reply.document if reply else None),
            first=first,
        )

    def _lock(self, chat_id: int) -> asyncio.Lock:
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = self._locks[chat_id] = asyncio.Lock()
        return lock

    def _budget(self, chat: Chat, msg: Message | None) -> bool:
        """True if the chat may be served now; says so once when it floods."""
        verdict = self._limiter.check(chat.id, self._mono())
        if verdict == "warn":
            wait = max(1, round(self._limiter.retry_in(chat.id, self._mono())))
            # Ahead of the backlog: the flooder learns now, not after every queued reply.
            self._say(chat, "You're sending commands faster than I can take them. I'll answer "
                            f"the ones I took; please wait about {wait} s before sending more.",
                      msg, first=True)
        return verdict == "allow"

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.message
        if msg is None or msg.text is None:
            return
        raw = c.split_command(msg.text)
        if raw is None or not c.is_for_me(raw, context.bot.username):
            return  # another bot's command in a group
        chat = msg.chat
        async with self._lock(chat.id):
            if not self._budget(chat, msg):
                return
            reply_to = msg.reply_to_message
            reply_text = (reply_to.text or reply_to.caption) if reply_to is not None else None
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
                self._say(chat, str(exc), msg)
                return
            if self._service.needs_group_admin(cmd, who):
                sender = msg.sender_chat.id if msg.sender_chat else None
                admin = await self._is_group_admin(context.bot, chat.id, who.user_id, sender)
                if admin is None:
                    self._say(chat, CANNOT_CHECK_ADMIN, msg)
                    return
                who = replace(who, group_admin=admin)
            log.info("command /%s from chat %s", raw.name, chat.id)
            answer = await self._carry_out(self._service.handle(cmd, who), f"/{raw.name}", chat)
            if answer is None:
                return
            self._say(chat, answer.text, msg, answer)
            if answer.photo is not None:  # after its text, in the chat's order
                self._replier.send(Outgoing(chat.id, answer.photo_caption, photo=answer.photo))
            for chat_id, text in answer.notices:
                self._replier.send(Outgoing(chat_id, text))

    async def _carry_out(
        self, work: Coroutine[Any, Any, Reply], what: str, chat: Chat
    ) -> Reply | None:
        """Run ``work`` as a task shutdown can cancel; None if it was cut short."""
        if self._stopping:
            work.close()
            return None
        task = asyncio.create_task(work)
        self._running.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            log.info("%s from chat %s cut short by shutdown", what, chat.id)
            return None
        finally:
            self._running.discard(task)

    async def on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A file sent in a private chat: an admin's OPML feed list to import."""
        msg = update.message
        if msg is None or msg.document is None:
            return
        chat = msg.chat
        async with self._lock(chat.id):
            if not self._budget(chat, msg):
                return
            who = Caller(chat_id=chat.id, user_id=msg.from_user.id if msg.from_user else None,
                         chat_type=chat.type, chat_title=chat.title)
            refusal = self._service.upload_refusal(who, msg.document.file_size)
            if refusal is not None:
                self._say(chat, refusal.text, msg)
                return
            log.info("feed list upload (%s bytes) from chat %s", msg.document.file_size, chat.id)
            try:
                data = await download(context.bot, msg.document.file_id, MAX_OPML_BYTES)
            except DownloadError as exc:
                self._say(chat, f"{exc} Nothing was imported.", msg)
                return
            answer = await self._carry_out(
                self._service.import_opml(data, who), "a feed list import", chat
            )
            if answer is not None:
                self._say(chat, answer.text, msg, answer)

    @staticmethod
    async def _is_group_admin(
        bot: Bot, chat_id: int, user_id: int | None, sender_chat: int | None
    ) -> bool | None:
        """Whether the sender administers the group; None if Telegram could not say."""
        if sender_chat == chat_id:
            return True  # an anonymous administrator, posting as the group itself
        if user_id is None:
            return False
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("getChatMember failed in chat %s: %s", chat_id, exc)
            return None
        return member.status in GROUP_ADMINS

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.message
        if msg is not None and self._budget(msg.chat, msg):
            self._say(msg.chat, NOT_A_COMMAND, msg)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        message = query.message
        alert = parse_alert_data(query.data or "")
        if alert is not None and message is not None:
            await self.on_alert_button(query, alert, context)
            return
        preview = parse_track_data(query.data or "")
        if preview is not None and message is not None:
            await self.on_track_button(query, preview, context)
            return
        choice = (query.data or "").split(":")
        if message is not None and len(choice) == 2 and choice[0] == SETTINGS_BUTTON:
            await self._setting_button(query, context, message.chat, message.message_id,
                                       choice[1])
            return
        page = parse_page_data(query.data or "")
        if page is None or message is None:
            await _answer(query, "This button no longer works.")
            return
        chat = message.chat
        async with self._lock(chat.id):
            if self._limiter.check(chat.id, self._mono()) != "allow":
                await _answer(query, "Too fast: please wait a few seconds.")
                return
            who = Caller(chat_id=chat.id, user_id=query.from_user.id, chat_type=chat.type)
            reply = await self._service.page(page[0], page[1], who)
            await _answer(query, None if reply is not None else "This list is not yours to see.")
            if reply is not None:
                self._replier.send(Outgoing(chat.id, reply.text, buttons=reply.buttons,
                                            edit_of=message.message_id))

    async def _setting_button(
        self, query: CallbackQuery, context: ContextTypes.DEFAULT_TYPE, chat: Chat,
        message_id: int, mode: str,
    ) -> None:
        """A delivery button under /settings: in groups, for the group's admins only."""
        async with self._lock(chat.id):
            if self._limiter.check(chat.id, self._mono()) != "allow":
                await _answer(query, "Too fast: please wait a few seconds.")
                return
            who = Caller(chat_id=chat.id, user_id=query.from_user.id, chat_type=chat.type)
            if who.in_group:
                admin = await self._is_group_admin(context.bot, chat.id, who.user_id, None)
                if not admin:
                    await _answer(query, "Only the group's administrators can change this.")
                    return
                who = replace(who, group_admin=True)
            await self._service.register(who)
            reply = await self._service.delivery_button(mode, who)
            await _answer(query, None if reply is not None else "This button no longer works.")
            if reply is not None:
                self._replier.send(Outgoing(chat.id, reply.text, buttons=reply.buttons,
                                            edit_of=message_id))

    async def _may_steer(self, query: CallbackQuery, bot: Bot) -> bool:
        """In a group, only its administrators change what it follows (as commands)."""
        chat = query.message.chat if query.message is not None else None
        if chat is None or chat.type == Chat.PRIVATE:
            return True
        admin = await self._is_group_admin(bot, chat.id, query.from_user.id, None)
        if not admin:
            await _answer(query, GROUP_ADMINS_ONLY if admin is False else CANNOT_CHECK_ADMIN)
        return bool(admin)

    async def on_alert_button(
        self, query: CallbackQuery, press: AlertPress, context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        """👍 / 👎 / 🔕 / Stop following under an alert: answered with a toast and
        the keyboard edited in place; no message is sent."""
        message = query.message
        assert message is not None
        chat = message.chat
        async with self._lock(chat.id):
            if self._limiter.check(chat.id, self._mono()) != "allow":
                await _answer(query, "Too fast: please wait a few seconds.")
                return
            if not await self._may_steer(query, context.bot):
                return
            tz = await asyncio.to_thread(self._service.db.chat_tz, chat.id)
            result = await self._service.steerer.press(
                press, chat_id=chat.id, user_id=query.from_user.id,
                message_id=message.message_id, tz=tz,
            )
            await _answer(query, result.text or None)
            if result.keyboard is None:
                return
            try:
                await query.edit_message_reply_markup(
                    markup_of(result.keyboard) if result.keyboard else None
                )
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    log.warning("could not redraw an alert's buttons: %s", exc.message)
            except TelegramError as exc:
                # Recorded already and answered; a keyboard left as it was is no error
                # to tell the chat about (a 429 here must not become "something went wrong").
                log.warning("could not redraw an alert's buttons: %s", exc.message)

    async def on_track_button(
        self, query: CallbackQuery, press: tuple[int, str], context: ContextTypes.DEFAULT_TYPE
    ) -> None:
        message = query.message
        assert message is not None
        chat = message.chat
        async with self._lock(chat.id):
            if not await self._may_steer(query, context.bot):
                return
            who = Caller(chat_id=chat.id, user_id=query.from_user.id, chat_type=chat.type)
            reply = await self._service.track_press(press[0], press[1], who)
            if reply is None:
                # Decided already (a second press), pruned, or another chat's preview.
                await _answer(query, "This preview is no longer open here. /track TITLE "
                                   "shows a new one.")
                return
            # The toast says what happened; the preview becomes the outcome, its
            # buttons gone, so the chat keeps a record of what it chose.
            await _answer(query, reply.text.split("\n")[0][:200])
            self._replier.send(Outgoing(chat.id, reply.text, edit_of=message.message_id))

    async def on_membership(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat = change.chat
        old, new = change.old_chat_member.status, change.new_chat_member.status
        if new in GONE:
            log.info("removed from chat %s (%s)", chat.id, new)
            await self._service.leave(chat.id, f"bot {new}")
            return
        if new in PRESENT and old not in PRESENT:
            # Back in the chat (added to a group, or unblocked in private): deliver again.
            await self._service.register(Caller(chat.id, None, chat.type, chat.title))
            if chat.type != Chat.PRIVATE:
                self._replier.send(Outgoing(chat.id, self._service.welcome(group=True)))

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.message
        if msg is None:
            return
        if msg.migrate_to_chat_id is not None:
            old, new = msg.chat.id, msg.migrate_to_chat_id
        elif msg.migrate_from_chat_id is not None:
            old, new = msg.migrate_from_chat_id, msg.chat.id
        else:
            return
        async with self._lock(old), self._lock(new):
            await self._service.migrate(old, new)
        log.info("group %s became supergroup %s; its storylines moved with it", old, new)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        log.error(
            "error while handling an update: %s: %s",
            type(err).__name__, err, exc_info=(type(err), err, err.__traceback__) if err else None,
        )
        if isinstance(update, Update) and update.effective_chat is not None:
            self._replier.send(Outgoing(update.effective_chat.id, GENERIC_ERROR))


def bot_commands(*, admin: bool) -> list[BotCommand]:
    """The menu for everyone, or (``admin``) for the bot's admins."""
    return [
        BotCommand(spec.name, spec.description[:256])
        for spec in c.COMMANDS if admin or not spec.admin
    ]


async def register_menus(bot: Bot, admins: Sequence[int]) -> None:
    """setMyCommands: the user menu for all chats, the full one in each admin's own chat."""
    try:
        await bot.set_my_commands(bot_commands(admin=False))
    except TelegramError as exc:
        log.warning("could not register the command menu (setMyCommands): %s", exc)
    for admin in admins:
        try:
            await bot.set_my_commands(bot_commands(admin=True), scope=BotCommandScopeChat(admin))
        except TelegramError as exc:  # e.g. an admin who never started the bot
            log.warning("could not register the admin menu for %s: %s", admin, exc)
