"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests.

The real python-telegram-bot client talks to it over HTTP (point
``STORYWATCH_TELEGRAM_API_URL`` at :attr:`FakeTelegram.api_url`). It implements
what the bot uses (getMe, getUpdates with offset and long polling,
sendMessage, sendPhoto and sendDocument (multipart uploads), editMessageText,
editMessageReplyMarkup, setMyCommands and getMyCommands per scope, getChatMember,
deleteWebhook, answerCallbackQuery, getFile and the file downloads under
``/file/bot<token>/`` (point ``STORYWATCH_TELEGRAM_FILE_URL`` at
:attr:`FakeTelegram.file_url`)...),
checks messages the way Telegram does (the HTML subset, balanced tags,
entities, 4,096 characters, inline keyboards) and records everything per chat.
Tests inject updates as users and Telegram make them (messages, button presses,
the bot being added to a group, a group becoming a supergroup) and inject
faults: 429 with retry_after, 403 (blocked), group migration, 400 parse errors,
slow answers, dropped connections (before or after the message is delivered).

With ``flood_limits`` on, it also answers 429 as Telegram does when a bot sends
too fast (more than 1 message a second to one chat, 20 a minute to one group,
30 a second in all); :meth:`count_429` counts every 429 it sent.

Standard library only (``http.server`` in a thread); safe to use from any
thread or event loop. It binds 127.0.0.1 and never reaches anything else.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}
    | {"blockquote", "tg-spoiler", "span", "tg-emoji"}
)
TRANSIT_JITTER = 0.1  # seconds of arrival jitter the per-chat flood check allows
BOT_USER = {
    "id": 123,
    "is_bot": True,
    "first_name": "Storywatch",
    "username": "storywatch_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a burst of new connections (a hundred chats
    # sending at once) can overflow it, and the kernel retries a dropped handshake a
    # second later, close to the tests' send time-outs on a slow machine.
    request_queue_size = 128


class _TelegramHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.error: str | None = None
        self.visible: list[str] = []

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag not in ALLOWED_TAGS:
            self._fail(f'unsupported start tag "{tag}"')
        elif tag == "a" and (set(a) != {"href"} or not a["href"]):
            self._fail("a tag needs exactly an href attribute")
        elif tag == "span" and a != {"class": "tg-spoiler"}:
            self._fail("span tag needs class=tg-spoiler")
        elif tag in ("b", "i", "u", "s", "strong", "em", "ins", "strike", "del") and a:
            self._fail(f'tag "{tag}" takes no attributes')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'unsupported start tag "{tag}/"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self._fail(f'unexpected end tag "{tag}"')
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for ch in "<>&":
            if ch in data:
                self._fail(f"unescaped {ch!r} in text")
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            self._fail(f"unsupported entity &{name};")
        self.visible.append("x")

    def handle_charref(self, name: str) -> None:
        self.visible.append("x")

    def handle_comment(self, data: str) -> None:
        self._fail("comments are not allowed")

    def handle_decl(self, decl: str) -> None:
        self._fail("declarations are not allowed")

    def unknown_decl(self, data: str) -> None:
        self._fail("declarations are not allowed")


def _short(text: str, limit: int = 400) -> str:
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_update(u: dict[str, Any]) -> str:
    if "message" in u:
        m = u["message"]
        chat, who = m["chat"]["id"], m["from"]["id"]
        for key in ("migrate_to_chat_id", "migrate_from_chat_id"):
            if key in m:
                return f"→ [{chat}] service message: {key} {m[key]}"
        if "document" in m:
            d = m["document"]
            return (f"→ [{chat}] user {who} (msg {m['message_id']}) sends a file: "
                    f"{d.get('file_name')} ({d.get('file_size')} bytes)")
        quoted = ""
        if "reply_to_message" in m:
            quoted = f" (replying to “{_short(m['reply_to_message']['text'], 60)}”)"
        return f"→ [{chat}] user {who} (msg {m['message_id']}): {_short(m['text'])}{quoted}"
    if "callback_query" in u:
        q = u["callback_query"]
        return (f"→ [{q['message']['chat']['id']}] user {q['from']['id']} presses a button "
                f"under msg {q['message']['message_id']}: {q['data']}")
    if "my_chat_member" in u:
        c = u["my_chat_member"]
        return (f"→ [{c['chat']['id']}] user {c['from']['id']} changes the bot's membership: "
                f"{c['old_chat_member']['status']} → {c['new_chat_member']['status']}")
    return f"→ {_short(json.dumps(u))}"


def _describe_sent(mark: str, m: Sent) -> str:
    quote = f" ↩ msg {m.reply_to}" if m.reply_to else ""
    if m.photo is not None:
        quote += f" [photo: PNG, {len(m.photo):,} bytes]"
    buttons = ""
    if m.markup:
        labels = [b["text"] for row in m.markup.get("inline_keyboard", []) for b in row]
        buttons = f" [buttons: {' '.join(labels)}]"
    if m.document is not None:
        name, content = m.document
        return (f"{mark} [{m.chat_id}] msg {m.message_id}{quote}: 📎 {name} ({len(content)} bytes),"
                f" caption: {_short(m.current)}{buttons}")
    return f"{mark} [{m.chat_id}] msg {m.message_id}{quote}: {_short(m.current)}{buttons}"


def _json(value: Any) -> Any:
    """A JSON parameter as PTB sends it: a string in form posts, a value in JSON bodies."""
    return json.loads(value) if isinstance(value, str) else value


def _multipart(ctype: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body (PTB uploads files this way): fields as strings, a
    file part as ``{"filename": ..., "content": bytes}``."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + raw
    )
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        if filename is not None:
            params[name] = {"filename": filename, "content": payload}
        else:
            params[name] = payload.decode("utf-8")
    # PTB names the upload in a field ("attach://<name>") or sends it as the field itself.
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            params[key] = params.get(value.removeprefix("attach://"), value)
    return params


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def validate_telegram_html(text: str) -> str | None:
    """``None`` if Telegram would accept ``text`` with parse_mode HTML, else why not."""
    p = _TelegramHTML()
    p.feed(text)
    p.close()
    if p.error is None and p.stack:
        p._fail(f'unclosed tag "{p.stack[-1]}"')
    if p.error is None and utf16_len("".join(p.visible)) > 4096:
        p._fail("message is too long")
    return p.error


def validate_plain(text: str) -> str | None:
    if not text.strip():
        return "message text is empty"
    if utf16_len(text) > 4096:
        return "message is too long"
    return None


@dataclass
class Sent:
    """One message the bot sent, as Telegram stored it."""

    chat_id: int
    message_id: int
    text: str
    parse_mode: str | None
    at: float
    edits: list[str] = field(default_factory=list)
    reply_to: int | None = None
    markup: dict[str, Any] | None = None  # the inline keyboard as it stands now
    document: tuple[str, bytes] | None = None  # (file name, content) of a sendDocument
    photo: bytes | None = None  # sendPhoto: the image as uploaded (``text`` is its caption)

    @property
    def current(self) -> str:
        return self.edits[-1] if self.edits else self.text


@dataclass
class Fault:
    """An error to answer instead of doing the work."""

    method: str
    chat_id: int | None
    status: int
    description: str
    parameters: dict[str, Any] | None
    remaining: int  # -1: until removed
    delay: float = 0.0
    deliver: bool = False  # perform the call anyway (a timed-out send that did arrive)
    drop: bool = False  # hang up without any answer (after the work if ``deliver``)


class _Dropped(Exception):
    """Raised inside a call to hang up on the client without answering."""


class FakeTelegram:
    """The fake server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, token: str = "123:TEST") -> None:
        self.token = token
        self._lock = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1000
        self._next_message_id = 1
        self._user_message_id = 10_000
        self.sent: list[Sent] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.commands: list[dict[str, str]] = []
        self.blocked: set[int] = set()
        self.migrated: dict[int, int] = {}
        self.faults: list[Fault] = []
        self.refused: list[tuple[str, int | None, int, str]] = []
        self.dropped: list[tuple[str, dict[str, Any]]] = []
        self.confirmed_offset = 0
        self.commands_by_scope: dict[str, list[dict[str, str]]] = {}
        self.chat_admins: dict[int, set[int]] = {}  # group id -> user ids that administer it
        self.answered_callbacks: list[dict[str, Any]] = []
        self.flood_limits = False
        self.events: list[tuple[float, str]] = []  # what came in and went out, for transcripts
        self.allowed_updates: list[str] = []  # as last set by getUpdates; [] = default kinds
        self._flood_times: list[tuple[float, int]] = []  # (arrival, chat) of accepted sends
        self._next_callback_id = 1
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self.downloads: list[str] = []  # file paths the bot downloaded, in order
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        """The value for STORYWATCH_TELEGRAM_API_URL (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        """The value for STORYWATCH_TELEGRAM_FILE_URL (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    def start(self) -> FakeTelegram:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests do ------------------------------------------------------

    def user_says(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        reply_to_text: str | None = None,
    ) -> int:
        """Queue a message from a user as an update; returns its message id."""
        uid = user_id if user_id is not None else abs(chat_id)
        chat = self._chat(chat_id, chat_type)
        with self._lock:
            self._user_message_id += 1
            msg: dict[str, Any] = {
                "message_id": self._user_message_id,
                "date": int(time.time()),
                "chat": chat,
                "from": {"id": uid, "is_bot": False, "first_name": f"User{uid}"},
                "text": text,
            }
            if text.startswith("/"):
                word = text.split()[0]
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(word)}]
            if reply_to_text is not None:
                self._user_message_id += 1
                msg["reply_to_message"] = {
                    "message_id": self._user_message_id,
                    "date": int(time.time()),
                    "chat": chat,
                    "from": {"id": uid + 1, "is_bot": False, "first_name": "Other"},
                    "text": reply_to_text,
                }
            self._push({"message": msg})
            return int(msg["message_id"])

    def user_sends_document(
        self,
        chat_id: int,
        file_name: str,
        content: bytes,
        *,
        user_id: int | None = None,
        mime_type: str = "text/x-opml",
        declared_size: int | None = None,
    ) -> int:
        """A user sends a file as a document; getFile and the file URL then serve it.
        ``declared_size`` is the file_size the update states (default: the real size).
        Returns the message id."""
        uid = user_id if user_id is not None else abs(chat_id)
        with self._lock:
            self._user_message_id += 1
            file_id = f"doc{self._user_message_id}"
            self.files[file_id] = (f"documents/file_{self._user_message_id}.opml", content)
            msg: dict[str, Any] = {
                "message_id": self._user_message_id,
                "date": int(time.time()),
                "chat": self._chat(chat_id),
                "from": {"id": uid, "is_bot": False, "first_name": f"User{uid}"},
                "document": {
                    "file_id": file_id, "file_unique_id": f"u{file_id}",
                    "file_name": file_name, "mime_type": mime_type,
                    "file_size": len(content) if declared_size is None else declared_size,
                },
            }
            self._push({"message": msg})
            return int(msg["message_id"])

    def documents(self, chat_id: int) -> list[Sent]:
        """The files (sendDocument) the bot sent to ``chat_id``."""
        return [m for m in self.messages(chat_id) if m.document is not None]

    def _push(self, update: dict[str, Any]) -> None:
        """Queue one update (the caller holds the lock)."""
        self.events.append((time.time(), _describe_update(update)))
        self._updates.append({"update_id": self._next_update_id, **update})
        self._next_update_id += 1
        self._lock.notify_all()

    @staticmethod
    def _chat(chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        ctype = chat_type or ("private" if chat_id > 0 else "supergroup")
        chat: dict[str, Any] = {"id": chat_id, "type": ctype}
        if ctype == "private":
            chat["first_name"] = f"User{chat_id}"
        else:
            chat["title"] = f"Group {chat_id}"
        return chat

    def press(self, chat_id: int, message_id: int, data: str, *, user_id: int) -> str:
        """A user presses an inline button under the bot's message; returns the query id."""
        with self._lock:
            qid = f"cq{self._next_callback_id}"
            self._next_callback_id += 1
            sent = next(m for m in self.sent if m.chat_id == chat_id and m.message_id == message_id)
            self._push({"callback_query": {
                "id": qid,
                "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
                "chat_instance": str(chat_id),
                "data": data,
                "message": {**self._message(chat_id, message_id, sent.current),
                            "chat": self._chat(chat_id)},
            }})
            return qid

    def bot_membership(
        self, chat_id: int, *, old: str, new: str, by_user: int, chat_type: str = "group"
    ) -> None:
        """Telegram's ``my_chat_member`` update: the bot's status in a chat changed."""
        member: dict[str, Any] = {"user": BOT_USER}

        def status(name: str) -> dict[str, Any]:
            return {**member, "status": name, **({"until_date": 0} if name == "kicked" else {})}

        with self._lock:
            self._push({"my_chat_member": {
                "chat": self._chat(chat_id, chat_type),
                "from": {"id": by_user, "is_bot": False, "first_name": f"User{by_user}"},
                "date": int(time.time()),
                "old_chat_member": status(old),
                "new_chat_member": status(new),
            }})

    def migrate_group(self, old_id: int, new_id: int) -> None:
        """A group becomes a supergroup: the two service messages Telegram sends,
        and from now on sends to the old id are refused with ``migrate_to_chat_id``."""
        with self._lock:
            self.migrated[old_id] = new_id
            self.chat_admins.setdefault(new_id, set()).update(self.chat_admins.get(old_id, ()))
            for chat_id, key, value, ctype in (
                (old_id, "migrate_to_chat_id", new_id, "group"),
                (new_id, "migrate_from_chat_id", old_id, "supergroup"),
            ):
                self._user_message_id += 1
                self._push({"message": {
                    "message_id": self._user_message_id,
                    "date": int(time.time()),
                    "chat": self._chat(chat_id, ctype),
                    "from": {"id": 1, "is_bot": False, "first_name": "Admin"},
                    key: value,
                }})

    def transcript(self) -> str:
        """Every update given to the bot and every message it sent, edited or was refused,
        in order: → in, ← out, ✎ edited, ✗ refused."""
        with self._lock:
            events = sorted(self.events, key=lambda e: e[0])
        return "\n".join(line for _, line in events)

    def count_429(self) -> int:
        """How many times this server answered 429 Too Many Requests."""
        with self._lock:
            return sum(1 for r in self.refused if r[2] == 429)

    def commands_for(self, scope: str = "default") -> list[str]:
        """The command names registered for a scope: "default" or "chat:ID"."""
        with self._lock:
            return [c["command"] for c in self.commands_by_scope.get(scope, [])]

    def fail(
        self,
        method: str,
        *,
        status: int,
        description: str,
        chat_id: int | None = None,
        parameters: dict[str, Any] | None = None,
        times: int = 1,
        delay: float = 0.0,
        deliver: bool = False,
        drop: bool = False,
    ) -> Fault:
        """Answer the next ``times`` calls of ``method`` (for ``chat_id``) with an error.

        ``drop=True`` closes the connection without answering instead (a dropped
        connection); with ``deliver=True`` the message is delivered first.
        """
        f = Fault(method, chat_id, status, description, parameters, times, delay, deliver, drop)
        with self._lock:
            self.faults.append(f)
        return f

    def rate_limit(self, retry_after: int, *, chat_id: int | None = None, times: int = 1) -> Fault:
        return self.fail(
            "sendMessage",
            status=429,
            description=f"Too Many Requests: retry after {retry_after}",
            parameters={"retry_after": retry_after},
            chat_id=chat_id,
            times=times,
        )

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def messages(self, chat_id: int) -> list[Sent]:
        with self._lock:
            return [m for m in self.sent if m.chat_id == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [m.current for m in self.messages(chat_id)]

    def all_messages(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
    ) -> None:
        """Poll ``condition`` until true; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        if condition():
            return
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_reply(self, chat_id: int, after: int, timeout: float = 30.0) -> str:
        """Wait for the bot's next message in ``chat_id`` beyond the first ``after``."""
        self.wait_for(
            lambda: len(self.messages(chat_id)) > after, timeout, f"a reply in chat {chat_id}"
        )
        return self.messages(chat_id)[after].current

    def pending_updates(self) -> int:
        with self._lock:
            return len([u for u in self._updates if u["update_id"] >= self.confirmed_offset])

    # -- the API ------------------------------------------------------------

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        for f in self.faults:
            if f.method == method and (f.chat_id is None or f.chat_id == chat_id):
                if f.remaining == 0:
                    continue
                if f.remaining > 0:
                    f.remaining -= 1
                return f
        return None

    def _call(self, method: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            fault = self._fault_for(method, 0)  # a Telegram outage at start
            if fault is not None:
                return self._refuse(method, 0, fault)
            return 200, {"ok": True, "result": BOT_USER}
        if method in ("deleteWebhook", "setWebhook", "close", "logOut"):
            return 200, {"ok": True, "result": True}
        if method == "answerCallbackQuery":
            fault = self._fault_for(method, 0)  # e.g. a query too old to answer
            if fault is not None:
                return self._refuse(method, 0, fault)
            with self._lock:
                self.answered_callbacks.append(dict(p))
                self.events.append((time.time(), f"⚑ answer to {p.get('callback_query_id')}: "
                                                  f"{_short(str(p.get('text') or '(no text)'))}"))
            return 200, {"ok": True, "result": True}
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(p)}
        if method == "setMyCommands":
            scope = self._scope(p)
            with self._lock:
                self.commands_by_scope[scope] = _json(p.get("commands", "[]"))
                if scope == "default":
                    self.commands = self.commands_by_scope[scope]
            return 200, {"ok": True, "result": True}
        if method == "getMyCommands":
            with self._lock:
                return 200, {"ok": True, "result": self.commands_by_scope.get(self._scope(p), [])}
        if method == "getChatMember":
            return self._chat_member(p)
        if method == "editMessageReplyMarkup":
            return self._edit(p, markup_only=True)
        if method == "deleteMyCommands":
            return 200, {"ok": True, "result": True}
        if method == "sendChatAction":
            return 200, {"ok": True, "result": True}
        if method == "sendMessage":
            return self._send(p)
        if method == "getFile":
            return self._get_file(p)
        if method == "sendDocument":
            return self._send_document(p)
        if method == "sendPhoto":
            return self._send_photo(p)
        if method == "editMessageText":
            return self._edit(p)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def _allowed(self, update: dict[str, Any]) -> bool:
        if not self.allowed_updates:  # Telegram's default: all but these
            return not any(k in update for k in ("chat_member", "message_reaction"))
        return any(k in update for k in self.allowed_updates)

    @staticmethod
    def _scope(p: dict[str, Any]) -> str:
        scope = _json(p.get("scope")) if p.get("scope") else {"type": "default"}
        if scope.get("type") == "chat":
            return f"chat:{int(scope['chat_id'])}"
        return str(scope.get("type", "default"))

    def _chat_member(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id, user_id = int(p["chat_id"]), int(p["user_id"])
        with self._lock:
            admins = self.chat_admins.get(chat_id, set())
        status = "administrator" if user_id in admins else "member"
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        result: dict[str, Any] = {"status": status, "user": user}
        if status == "administrator":
            result |= {
                "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False,
                "can_change_info": True, "can_invite_users": True,
                "can_post_stories": False, "can_edit_stories": False,
                "can_delete_stories": False,
            }
        return 200, {"ok": True, "result": result}

    def _flooded(self, chat_id: int) -> int | None:
        """Seconds to retry after if this send breaks Telegram's flood limits, else None
        (and the send is counted). The caller holds the lock."""
        now = time.monotonic()
        self._flood_times = [(t, c) for t, c in self._flood_times if t > now - 60.0]
        same_chat = [t for t, c in self._flood_times if c == chat_id]
        # Counted at arrival, as Telegram counts; two sends the bot spaced 1.1 s apart
        # can arrive closer by their transit times' jitter on a loaded machine, which
        # Telegram's per-chat limit (approximate, "about one a second") tolerates.
        if same_chat and same_chat[-1] > now - (1.0 - TRANSIT_JITTER):
            return 1
        if chat_id < 0 and len(same_chat) >= 20:
            return int(same_chat[0] + 60.0 - now) + 1
        if sum(1 for t, _ in self._flood_times if t > now - 1.0) >= 30:
            return 1
        self._flood_times.append((now, chat_id))
        return None

    def _get_updates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(p.get("offset", 0) or 0)
        timeout = float(p.get("timeout", 0) or 0)
        limit = int(p.get("limit", 100) or 100)
        deadline = time.monotonic() + min(timeout, 10.0)
        with self._lock:
            if p.get("allowed_updates") is not None:
                # Like Telegram: the last list given stays in force, and updates of
                # other kinds are never delivered.
                self.allowed_updates = list(_json(p["allowed_updates"]))
            if offset:
                # Like Telegram: asking with an offset confirms every earlier update.
                self.confirmed_offset = max(self.confirmed_offset, offset)
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while True:
                ready = [
                    u for u in self._updates
                    if u["update_id"] >= offset and self._allowed(u)
                ][:limit]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready
                self._lock.wait(min(left, 0.5))

    @staticmethod
    def _error(
        status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return status, body

    def _check_text(self, p: dict[str, Any]) -> str | None:
        text = str(p.get("text", ""))
        if p.get("parse_mode") == "HTML":
            why = validate_telegram_html(text)
            if why is None and not text.strip():
                why = "message text is empty"
        elif p.get("parse_mode") in (None, ""):
            why = validate_plain(text)
        else:
            why = f"unsupported parse_mode {p.get('parse_mode')}"
        return why

    def _send(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id = int(p["chat_id"])
        fault = self._fault_for("sendMessage", chat_id)
        if fault is not None and not fault.deliver:
            if fault.drop:
                raise _Dropped
            return self._refuse("sendMessage", chat_id, fault)
        if chat_id in self.blocked:
            return self._refuse_plain(
                "sendMessage", chat_id, 403, "Forbidden: bot was blocked by the user"
            )
        if chat_id in self.migrated:
            return self._refuse_plain(
                "sendMessage",
                chat_id,
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[chat_id]},
            )
        why = self._check_text(p) or self._check_markup(p)
        if why is not None:
            return self._refuse_plain(
                "sendMessage", chat_id, 400, f"Bad Request: can't parse entities: {why}"
            )
        if self.flood_limits:
            with self._lock:
                retry = self._flooded(chat_id)
            if retry is not None:
                return self._refuse_plain(
                    "sendMessage", chat_id, 429, f"Too Many Requests: retry after {retry}",
                    {"retry_after": retry},
                )
        with self._lock:
            mid = self._next_message_id
            self._next_message_id += 1
            reply_to: int | None = None
            if p.get("reply_parameters"):
                reply_to = int(_json(p["reply_parameters"]).get("message_id", 0)) or None
            elif p.get("reply_to_message_id"):
                reply_to = int(p["reply_to_message_id"])
            self.sent.append(
                Sent(
                    chat_id,
                    mid,
                    str(p["text"]),
                    p.get("parse_mode"),
                    time.time(),
                    reply_to=reply_to,
                    markup=_json(p["reply_markup"]) if p.get("reply_markup") else None,
                )
            )
            self.events.append((time.time(), _describe_sent("←", self.sent[-1])))
            self._lock.notify_all()
        if fault is not None:  # delivered, but the client times out or is hung up on
            time.sleep(fault.delay)
            if fault.drop:
                raise _Dropped
        return 200, {"ok": True, "result": self._message(chat_id, mid, str(p["text"]))}

    def _get_file(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fault = self._fault_for("getFile", None)
        if fault is not None:
            return self._refuse("getFile", None, fault)
        file_id = str(p.get("file_id", ""))
        with self._lock:
            found = self.files.get(file_id)
        if found is None:
            return self._error(400, "Bad Request: invalid file_id")
        path, content = found
        return 200, {"ok": True, "result": {
            "file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(content),
            "file_path": path,
        }}

    def _download(self, path: str) -> bytes | None:
        """The content of an uploaded file by its file_path, or None (404)."""
        with self._lock:
            self.downloads.append(path)
            return next((c for p, c in self.files.values() if p == path), None)

    def _send_document(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id = int(p["chat_id"])
        fault = self._fault_for("sendDocument", chat_id)
        if fault is not None:
            return self._refuse("sendDocument", chat_id, fault)
        if chat_id in self.blocked:
            return self._refuse_plain(
                "sendDocument", chat_id, 403, "Forbidden: bot was blocked by the user"
            )
        upload = p.get("document")
        if not isinstance(upload, dict) or not upload.get("content"):
            return self._refuse_plain(
                "sendDocument", chat_id, 400, "Bad Request: file must be non-empty"
            )
        caption = str(p.get("caption") or "")
        if utf16_len(caption) > 1024:
            return self._refuse_plain(
                "sendDocument", chat_id, 400, "Bad Request: message caption is too long"
            )
        with self._lock:
            mid = self._next_message_id
            self._next_message_id += 1
            reply_to = None
            if p.get("reply_parameters"):
                reply_to = int(_json(p["reply_parameters"]).get("message_id", 0)) or None
            self.sent.append(Sent(
                chat_id, mid, caption, None, time.time(), reply_to=reply_to,
                markup=_json(p["reply_markup"]) if p.get("reply_markup") else None,
                document=(str(upload.get("filename") or "file"), bytes(upload["content"])),
            ))
            self.events.append((time.time(), _describe_sent("←", self.sent[-1])))
            self._lock.notify_all()
        message = self._message(chat_id, mid, caption)
        del message["text"]
        message["document"] = {
            "file_id": f"sent{mid}", "file_unique_id": f"usent{mid}",
            "file_name": upload.get("filename") or "file", "file_size": len(upload["content"]),
        }
        if caption:
            message["caption"] = caption
        return 200, {"ok": True, "result": message}

    def _send_photo(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """sendPhoto with an uploaded file (multipart): a PNG or JPEG, a caption of at
        most 1,024 characters; recorded like a message, ``text`` being the caption."""
        chat_id = int(p["chat_id"])
        fault = self._fault_for("sendPhoto", chat_id)
        if fault is not None:
            return self._refuse("sendPhoto", chat_id, fault)
        upload = p.get("photo")
        photo = upload.get("content") if isinstance(upload, dict) else upload
        caption = str(p.get("caption", "") or "")
        why = None
        if not isinstance(photo, bytes):
            why = "there is no photo in the request"
        elif not photo.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            why = "IMAGE_PROCESS_FAILED"
        elif utf16_len(caption) > 1024:
            why = "message caption is too long"
        if why is not None:
            return self._refuse_plain("sendPhoto", chat_id, 400, f"Bad Request: {why}")
        with self._lock:
            mid = self._next_message_id
            self._next_message_id += 1
            self.sent.append(Sent(chat_id, mid, caption, None, time.time(),
                                  photo=photo if isinstance(photo, bytes) else None))
            self.events.append((time.time(), _describe_sent("←", self.sent[-1])))
            self._lock.notify_all()
        result = self._message(chat_id, mid, caption)
        del result["text"]
        result["photo"] = [{"file_id": f"photo{mid}", "file_unique_id": f"p{mid}",
                            "width": 640, "height": 320}]
        if caption:
            result["caption"] = caption
        return 200, {"ok": True, "result": result}

    def _edit(self, p: dict[str, Any], *, markup_only: bool = False) -> tuple[int, dict[str, Any]]:
        method = "editMessageReplyMarkup" if markup_only else "editMessageText"
        chat_id = int(p["chat_id"])
        fault = self._fault_for(method, chat_id)
        if fault is not None:
            return self._refuse(method, chat_id, fault)
        if chat_id in self.blocked:
            return self._refuse_plain(
                method, chat_id, 403, "Forbidden: bot was blocked by the user"
            )
        why = self._check_markup(p) if markup_only else self._check_text(p) or self._check_markup(p)
        if why is not None:
            return self._refuse_plain(
                method, chat_id, 400, f"Bad Request: can't parse entities: {why}"
            )
        mid = int(p["message_id"])
        markup = _json(p["reply_markup"]) if p.get("reply_markup") else None
        with self._lock:
            target = next(
                (m for m in self.sent if m.chat_id == chat_id and m.message_id == mid), None
            )
            if target is None:
                return self._error(400, "Bad Request: message to edit not found")
            text = target.current if markup_only else str(p["text"])
            if target.current == text and target.markup == markup:
                return self._error(
                    400,
                    "Bad Request: message is not modified: specified new message content "
                    "and reply markup are exactly the same as a current content and reply "
                    "markup of the message",
                )
            if text != target.current:
                target.edits.append(text)
            target.markup = markup
            self.events.append((time.time(), _describe_sent("✎", target)))
            self._lock.notify_all()
        return 200, {"ok": True, "result": self._message(chat_id, mid, text)}

    @staticmethod
    def _check_markup(p: dict[str, Any]) -> str | None:
        """Telegram's rules for an inline keyboard: button texts, 1-64 bytes of data."""
        if not p.get("reply_markup"):
            return None
        rows = _json(p["reply_markup"]).get("inline_keyboard")
        if not isinstance(rows, list):
            return "reply markup must be an inline keyboard"
        for row in rows:
            for button in row:
                data = button.get("callback_data")
                if not button.get("text") or data is None or not 1 <= len(data.encode()) <= 64:
                    return "BUTTON_DATA_INVALID"
        return None

    def _fault_for(self, method: str, chat_id: int) -> Fault | None:
        with self._lock:
            fault = self._take_fault(method, chat_id)
        if fault is not None and fault.delay and not fault.deliver:
            time.sleep(fault.delay)
        return fault

    def _refuse(self, method: str, chat_id: int, fault: Fault) -> tuple[int, dict[str, Any]]:
        return self._refuse_plain(
            method, chat_id, fault.status, fault.description, fault.parameters
        )

    def _refuse_plain(
        self,
        method: str,
        chat_id: int | None,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refused.append((method, chat_id, status, description))
            self.events.append((time.time(), f"✗ [{chat_id}] {method}: {status} {description}"))
        return self._error(status, description, parameters)

    @staticmethod
    def _message(chat_id: int, mid: int, text: str) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id < 0:
            chat["title"] = f"Group {chat_id}"
        return {
            "message_id": mid,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            "text": text,
        }

    # -- HTTP plumbing ------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _respond(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out or was killed)

            def _file(self) -> None:
                path = unquote(self.path.split("?")[0])[len(f"/file/bot{fake.token}/"):]
                content = fake._download(path)
                status, body = (200, content) if content is not None else (404, b"Not Found")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                # PTB percent-encodes the file URL's path (the token's ":" included).
                if unquote(self.path).startswith(f"/file/bot{fake.token}/"):
                    self._file()
                    return
                prefix = f"/bot{fake.token}/"
                if not self.path.startswith(prefix):
                    self._respond(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                    return
                method = self.path[len(prefix) :].split("?")[0]
                ctype = self.headers.get("Content-Type", "")
                params: dict[str, Any]
                if "json" in ctype and raw:
                    params = json.loads(raw)
                elif ctype.startswith("multipart/form-data"):
                    params = _multipart(ctype, raw)
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                with fake._lock:
                    fake.requests.append((method, params))
                try:
                    status, body = fake._call(method, params)
                except _Dropped:
                    with fake._lock:
                        fake.dropped.append((method, params))
                    self.close_connection = True  # no answer at all: the client sees EOF
                    return
                self._respond(status, body)

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

        return Handler
