"""Access and abuse: who may manage feeds, per-chat limits on storylines and on
command rate, every command's arguments fuzzed (pure parser and service layer
with a real database), and the bot token kept out of logs, errors and messages.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telegram import Bot, Update
from telegram.request import HTTPXRequest

from bot.delivery.ratelimit import SendLimiter, SendLimits
from bot.delivery.replies import Replier
from bot.delivery.sender import Sender, SenderOptions
from bot.errors import FetchError
from bot.fetching.guard import Guard
from bot.models import Feed, FeedState, Item, Match, Storyline
from bot.observability.logs import NOISY_LOGGERS, configure_logging
from bot.pipeline import ProbeResult
from bot.settings import LimitOptions, Settings
from bot.storage.repository import Database, MatchToStore
from bot.telegram import commands as c
from bot.telegram.handlers import Handlers
from bot.telegram.service import Caller, ChatService
from bot.telegram.steering import parse_track_data
from tests.reliability.conftest import Table, make_settings
from tests.support.fake_telegram import FakeTelegram
from tests.support.ports import unused_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")

ADMIN = 1001
STRANGER = 2002


class RecordingFeeds:
    """A FeedAdder that never touches the network: it checks the URL like the
    fetcher would, records the call and refuses."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def add_feed(self, url: str, *, added_by: int | None = None,
                       title: str | None = None) -> tuple[Feed, ProbeResult]:
        self.calls.append(url)
        Guard().check_url(url)
        raise FetchError("could not connect (test)", url=url)


def _service(tmp: Path, **limits: int) -> tuple[ChatService, Database, RecordingFeeds, Settings]:
    settings = make_settings(tmp, admins=[ADMIN], limits=LimitOptions(**limits))
    db = Database.open(settings.database_path)
    feeds = RecordingFeeds()
    return ChatService(db, feeds, settings), db, feeds, settings


def _cmd(text: str) -> c.Command:
    raw = c.split_command(text)
    assert raw is not None
    return c.parse(raw)


async def test_only_admins_manage_feeds(tmp_path: Path, table: Table) -> None:
    service, db, feeds, _ = _service(tmp_path)
    from datetime import UTC, datetime

    db.add_feed("https://news.example.test/rss", now=datetime.now(UTC))
    attempts = [
        "/feeds", "/addfeed https://evil.example.test/rss", "/removefeed 1",
        "/addfeed http://127.0.0.1/", "/removefeed 99",
    ]
    tried = 0
    for chat, user in ((STRANGER, STRANGER), (-500, STRANGER), (ADMIN + 1, None)):
        for text in attempts:
            reply = (await service.handle(_cmd(text), Caller(
                chat_id=chat, user_id=user, chat_type="private" if chat > 0 else "supergroup",
                group_admin=True))).text
            assert reply.startswith("Sorry, only the bot's admins can manage feeds"), reply
            tried += 1
    assert feeds.calls == [] and [f.url for f in db.list_feeds()] == [
        "https://news.example.test/rss"
    ]
    # An admin in the same group may.
    reply = (await service.handle(_cmd("/removefeed 1"), Caller(chat_id=-500, user_id=ADMIN))).text
    assert reply == "Removed feed #1." and db.list_feeds() == []
    db.close()
    table.row(
        "Feed management by non-admins (/feeds, /addfeed, /removefeed from private chats, "
        "groups, no user)", "service layer", tried,
        f"{tried} refused, 0 fetches, feeds unchanged; the admin's /removefeed works",
    )


async def _track(service: ChatService, title: str, who: Caller) -> str:
    """/track TITLE, then Track it under the preview (as the chat would press it)."""
    reply = await service.handle(_cmd(f"/track {title}"), who)
    keep = dict(reply.buttons).get("Track it")
    if keep is None:
        return reply.text
    pending, action = parse_track_data(keep) or (0, "")
    pressed = await service.track_press(pending, action, who)
    assert pressed is not None
    return pressed.text


async def test_storyline_limit_per_chat(tmp_path: Path, table: Table) -> None:
    service, db, _, _ = _service(tmp_path, storylines_per_chat=3)
    replies = [await _track(service, f"Storyline number {n} about trade", Caller(77, 77))
               for n in range(10)]
    assert [r.startswith("Tracking #") for r in replies] == [True] * 3 + [False] * 7
    assert all("the limit is 3" in r for r in replies[3:])
    assert db.count_storylines_created_by(77) == 3
    # Previews opened before the limit was reached cannot pass it either.
    previews = [await service.handle(_cmd(f"/track Harbour strike number {n} in Rotterdam"),
                                     Caller(79, 79)) for n in range(4)]
    pressed = [await service.track_press(*(parse_track_data(dict(p.buttons)["Track it"])
                                           or (0, "")), Caller(79, 79)) for p in previews]
    assert [p is not None and p.text.startswith("Tracking #") for p in pressed] == [
        True, True, True, False]
    assert db.count_storylines_created_by(79) == 3
    other = await _track(service, "Another chat storyline", Caller(78, 78))
    assert other.startswith("Tracking #")
    db.close()
    table.row("Storylines per chat (limit 3)", "/track ×10 from one chat, Track it each", 10,
              "3 created, 7 refused with the limit (also 4 previews opened at once: 3 "
              "created); another chat unaffected")


class _StubBot:
    username = "storywatch_test_bot"

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_message(self, chat_id: int, text: str, **_: Any) -> None:
        self.sent.append((chat_id, text))


def _update(chat_id: int, text: str, n: int) -> Update:
    chat = {"id": chat_id, "type": "private", "first_name": "U"}
    return Update.de_json({
        "update_id": n,
        "message": {"message_id": n, "date": 0, "chat": chat, "text": text,
                    "from": {"id": chat_id, "is_bot": False, "first_name": "U"},
                    "entities": [{"type": "bot_command", "offset": 0, "length": 5}]},
    }, None)


async def test_command_flood_is_rate_limited_per_chat(tmp_path: Path, table: Table) -> None:
    service, db, _, _ = _service(tmp_path)
    clock = [1000.0]
    bot = _StubBot()
    unlimited = SendLimits(per_chat=10_000, per_group=10_000, overall=10_000, overall_gap=0.0)
    replier = Replier(bot, SendLimiter(unlimited))  # type: ignore[arg-type]
    handlers = Handlers(service, replier, commands_per_minute=10, monotonic=lambda: clock[0])
    context: Any = SimpleNamespace(bot=bot)
    for n in range(200):  # 200 commands in 20 seconds from one chat
        clock[0] += 0.1
        await handlers.on_command(_update(31, "/help", n), context)
        if n % 20 == 0:
            await handlers.on_command(_update(32, "/help", 10_000 + n), context)
    await replier.stop()
    to_flooder = [t for chat, t in bot.sent if chat == 31]
    to_other = [t for chat, t in bot.sent if chat == 32]
    warnings = [t for t in to_flooder if "faster than I can take them" in t]
    assert len(to_flooder) == 11 and len(warnings) == 1
    assert len(to_other) == 10 and not any("faster" in t for t in to_other)
    clock[0] += 61  # a minute later the flooder is served again
    await handlers.on_command(_update(31, "/help", 999), context)
    await replier.stop()
    assert "/track" in bot.sent[-1][1]
    db.close()
    table.row("Command flood (limit 10/min per chat)", "200 commands in 20 s from one chat",
              200, "10 answered, 1 warning, 189 dropped silently; a second chat served "
              "throughout; served again a minute later")


# --- fuzzing ------------------------------------------------------------------------------

NAMES = [spec.name for spec in c.COMMANDS] + ["unknown", "TRACK", "addFeed"]
ARGS = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"[#\-+]?[0-9]{0,30}", fullmatch=True),
    st.sampled_from(["http://127.0.0.1/", "file:///etc/passwd", "https://[::1", "http://%zz",
                     "javascript:alert(1)", "http://2130706433/", "#-1", "0", "9" * 40,
                     "https://a.test/" + "x" * 3000, "\u202e\u0000\ud7ff", "<b>&amp;</b>"]),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(NAMES), args=ARGS, bot=st.sampled_from(["", "@storywatch_test_bot"]))
@example(name="addfeed", args="A://[", bot="")  # once a ValueError out of urlsplit
def test_command_parser_fuzz(name: str, args: str, bot: str) -> None:
    raw = c.split_command(f"/{name}{bot} {args}")
    if raw is None:
        return
    try:
        c.parse(raw, has_reply=bool(len(args) % 2))
    except c.UsageError as exc:
        assert str(exc) and len(str(exc)) < 1000


@pytest.fixture(scope="module")
def fuzz_world() -> Iterator[tuple[ChatService, Database, RecordingFeeds]]:
    with tempfile.TemporaryDirectory() as d:
        service, db, feeds, _ = _service(Path(d), storylines_per_chat=1000)
        yield service, db, feeds
        db.close()


_FUZZ_COUNT = [0]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(NAMES), args=ARGS,
    user=st.sampled_from([ADMIN, STRANGER, None]),
    chat=st.sampled_from([ADMIN, STRANGER, -100, -200]),
    reply=st.one_of(st.none(), st.text(max_size=500)),
)
def test_service_fuzz(
    fuzz_world: tuple[ChatService, Database, RecordingFeeds],
    name: str, args: str, user: int | None, chat: int, reply: str | None,
) -> None:
    service, _, _ = fuzz_world
    raw = c.split_command(f"/{name} {args}")
    if raw is None:
        return
    try:
        cmd = c.parse(raw, has_reply=bool(reply))
    except c.UsageError:
        return
    who = Caller(chat_id=chat, user_id=user, chat_type="private" if chat > 0 else "group",
                 reply_text=reply)
    text = asyncio.run(service.handle(cmd, who)).text
    assert text.strip() and len(text.encode("utf-16-le")) // 2 <= 4096
    _FUZZ_COUNT[0] += 1


def test_service_fuzz_left_the_database_sound(
    fuzz_world: tuple[ChatService, Database, RecordingFeeds], table: Table
) -> None:
    _, db, feeds = fuzz_world
    assert db.integrity_check() == "ok"
    assert feeds.calls == [] or all(isinstance(u, str) for u in feeds.calls)
    table.row(
        "Command arguments fuzzed (hypothesis: every command, random text, ids, URLs, "
        "replies; admin and not)",
        "pure parser (400 examples) + ChatService with a real SQLite DB "
        "(300 examples)", 700,
        f"0 unhandled exceptions; {_FUZZ_COUNT[0]} commands reached the service, every reply "
        "non-empty and ≤ 4,096 units; integrity_check ok",
    )


# --- the token --------------------------------------------------------------------------

SECRET = "987654321:AAH-realistic_Secret-Token_0123456789abcdef"


async def test_token_never_in_logs_errors_or_messages(tmp_path: Path, table: Table) -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in NOISY_LOGGERS}
    stream = io.StringIO()
    configure_logging("console", "DEBUG", [SECRET], stream=stream)
    try:
        assert all(logging.getLogger(n).level >= logging.WARNING for n in NOISY_LOGGERS)
        logging.getLogger("httpx").info("HTTP Request: POST https://x/bot%s/getMe", SECRET)
        with FakeTelegram(SECRET) as fake:
            db = Database.open(tmp_path / "sw.db")
            from datetime import UTC, datetime

            now = datetime.now(UTC)
            feed = db.add_feed("http://127.0.0.1:9/f", now=now)
            db.commit_poll(feed.id, FeedState(), now=now, title="F", items=[], matches=[])
            story = db.add_storyline(Storyline(0, "Story"), now=now, created_by=1)
            for chat in (1, 2, 3, 4, 5):
                db.upsert_chat(chat, now=now)
                db.subscribe(chat, story.id, now=now)
            items = [Item(f"k{n}", f"Title {n}", "", None, None, "S", feed.id) for n in range(3)]
            db.commit_poll(feed.id, FeedState(), now=now, title="F", items=items,
                           matches=[MatchToStore(Match(i.key, story.id, 1.0, "r")) for i in items])
            fake.fail("sendMessage", chat_id=1, status=500, description="Internal Server Error",
                      times=-1)
            fake.fail("sendMessage", chat_id=2, status=200, description="", drop=True)
            fake.fail("sendMessage", chat_id=3, status=400,
                      description="Bad Request: chat not found")
            fake.blocked.add(4)
            bot = Bot(SECRET, base_url=fake.api_url, request=HTTPXRequest(connection_pool_size=8))
            async with bot:
                sender = Sender(db, bot, options=SenderOptions(
                    send_timeout=1.0, uncertain_delay=0.1, backoff_base=0.05, idle_poll=0.05,
                    max_attempts=2),
                    limiter=SendLimiter(SendLimits(per_chat=100, overall=1000, overall_gap=0.0)))
                sender.start()
                for _ in range(200):
                    counts = db.outbox_counts()
                    if counts["pending"] == counts["sending"] == 0:
                        break
                    await asyncio.sleep(0.05)
                await sender.stop()
                try:
                    await Bot(SECRET, base_url=f"http://127.0.0.1:{unused_port()}/bot").get_me()
                except Exception as exc:  # the error a caller would log or show
                    logging.getLogger("bot.test").exception("Telegram failed: %s", exc)
                    assert SECRET not in stream.getvalue()
            db.close()
            dump = "\n".join(sqlite3.connect(tmp_path / "sw.db").iterdump())
            sent = "\n".join(m.text for m in fake.all_messages())
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)
    logs = stream.getvalue()
    assert "Telegram failed" in logs and "refuses the bot" in logs
    for where, text in (("logs", logs), ("database", dump), ("messages", sent)):
        assert SECRET not in text, where
        assert SECRET.split(":")[1] not in text, where
    table.row(
        "Bot token in logs, errors, messages",
        "sender through 500, dropped connection, 400 chat not found, 403; a failed getMe; "
        "an httpx INFO line with the token; DEBUG level", 1,
        "httpx/httpcore held at WARNING; 0 occurrences of the token (or its secret half) in "
        "the log stream, the database dump or the messages sent",
    )


def test_reliability_doc_names_only_tests_that_exist() -> None:
    """Every test docs/reliability.md cites under tests/reliability/ is defined there."""
    import re

    here = Path(__file__).parent
    doc = (here.parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", doc)
    assert len(cited) >= 15
    for module, name in cited:
        source = (here / module).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"{module}::{name}"
    for rest in re.findall(r"`(test_\w+)`", doc):
        assert any(f"def {rest}(" in p.read_text(encoding="utf-8")
                   for p in (*here.glob("test_*.py"), *here.parents[0].glob("*/test_*.py"))), rest
