"""Digests through the real sender and the fake Bot API, on a real SQLite file: a 429,
a restart and a crash in the middle of a digest, and a digest time missed while down.

Each digest here has several parts (over 4,096 characters). "Restart" is what
``storywatch run`` does at start: a new ``Database`` on the same file,
``recover_in_flight``, a new ``Sender``. Every test checks that the chat got each
part exactly once, in order, and that the outbox ends all 'sent'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.sender import Sender, SenderOptions
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.conftest import TOKEN
from tests.reliability.conftest import Table
from tests.support.fake_telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")

CHAT = 301
OPTIONS = SenderOptions(send_timeout=5.0, backoff_base=0.1, idle_poll=0.1, max_hold=1.5,
                        uncertain_delay=0.5)
TOPICS = ("energy deal", "grain exports", "Arctic shipping", "nuclear talks", "visa rules",
          "bank payments", "rail corridor", "space cooperation", "gas pipeline")


def hold_alerts(path: Path, count: int, *, created: datetime, times: str) -> None:
    """``count`` alerts for CHAT, held for its digest at ``times`` (UTC)."""
    db = Database.open(path)
    try:
        feed = db.add_feed("http://127.0.0.1:9/feed.xml", now=created, title="Feed")
        db.commit_poll(feed.id, FeedState(), now=created, title="Feed", items=[], matches=[])
        story = db.add_storyline(Storyline(0, "Wang Yi visit to Moscow"), now=created)
        db.upsert_chat(CHAT, now=created)
        db.subscribe(CHAT, story.id, now=created)
        db.set_chat_delivery(CHAT, "digest", times=times)
        items = [
            Item(f"k{n}", f"Wang Yi in Moscow, report {n}: {TOPICS[n % len(TOPICS)]} " + "·" * 150,
                 "", f"https://news.example.test/{n}", created - timedelta(minutes=n),
                 f"Outlet {n % 4}", feed.id)
            for n in range(count)
        ]
        db.commit_poll(feed.id, FeedState(), now=created, title="Feed", items=items,
                       matches=[MatchToStore(Match(i.key, story.id, 1.0, "why")) for i in items])
    finally:
        db.close()


def stored_parts(path: Path) -> list[str]:
    db = Database.open(path)
    try:
        rows = db._query("SELECT parts FROM digests ORDER BY id")
        return [p for r in rows for p in json.loads(r["parts"])]
    finally:
        db.close()


def outbox_and_digests(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    db = Database.open(path)
    try:
        return db.outbox_counts(), db.digest_counts()
    finally:
        db.close()


async def until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end and not cond():
        await asyncio.sleep(0.05)
    assert cond(), f"timed out waiting for {what}"


async def run_sender(path: Path, fake: FakeTelegram, cond: Callable[[], bool], what: str,
                     *, utcnow: Callable[[], datetime] | None = None,
                     on_send: Callable[[bool, float], None] | None = None,
                     bot: Bot | None = None) -> None:
    """Start (or restart) the sender on the file, run it until ``cond``, stop it; through
    ``bot`` if given, else a Bot of its own."""
    db = Database.open(path)
    db.recover_in_flight()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if bot is None:
                bot = await stack.enter_async_context(Bot(TOKEN, base_url=fake.api_url))
            sender = Sender(db, bot, options=OPTIONS, on_send=on_send,
                            utcnow=utcnow or (lambda: datetime.now(UTC)))
            sender.start()
            try:
                await until(cond, what)
            finally:
                await sender.stop()
    finally:
        db.close()


def digest_texts(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.messages(CHAT) if m.parse_mode == "HTML"]


def assert_each_part_once_in_order(fake: FakeTelegram, path: Path) -> list[str]:
    parts = stored_parts(path)
    assert len(parts) >= 4, "the digest should have several parts"
    assert digest_texts(fake) == parts  # each once, in order
    outbox, digests = outbox_and_digests(path)
    assert outbox["sent"] == 70 and outbox["pending"] == outbox["sending"] == 0, outbox
    assert digests == {"pending": 0, "sending": 0, "sent": 1, "failed": 0, "dropped": 0}
    return parts


async def test_a_429_in_the_middle_of_a_digest(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    path = tmp_path / "storywatch.db"
    hold_alerts(path, 70, created=datetime.now(UTC) - timedelta(days=1), times="00:00")
    sent_ok: list[bool] = []

    def on_send(ok: bool, _: float) -> None:
        sent_ok.append(ok)
        if sent_ok == [True]:  # right after part 1: Telegram says 429 to part 2
            fake.rate_limit(2, chat_id=CHAT, times=1)

    await run_sender(path, fake, lambda: outbox_and_digests(path)[1]["sent"] == 1,
                     "the digest sent", on_send=on_send)
    assert fake.count_429() == 1 and sent_ok[1] is False
    parts = assert_each_part_once_in_order(fake, path)
    table.row("**429 in the middle of a digest**", f"a digest of {len(parts)} parts; "
              "retry_after 2 s on part 2", len(parts),
              "given back, resumed at part 2 after the wait: every part once, in order; "
              "70 alerts 'sent'")


async def test_parts_that_waited_for_a_busy_connection_are_each_sent_once(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    """The bot's one connection is held for 3 s by another send: the digest's first
    part times out waiting for it, again and again. It never left, so it is not
    uncertain; before, a second such wait took it as delivered (a part lost)."""
    path = tmp_path / "storywatch.db"
    hold_alerts(path, 70, created=datetime.now(UTC) - timedelta(days=1), times="00:00")
    other = CHAT + 1
    fake.fail("sendMessage", chat_id=other, status=200, description="", delay=3.0,
              deliver=True)
    request = HTTPXRequest(connection_pool_size=1, pool_timeout=0.2)
    async with Bot(TOKEN, base_url=fake.api_url, request=request) as bot:
        busy = asyncio.create_task(
            bot.send_message(other, "holds the connection", read_timeout=10, write_timeout=10))
        await until(lambda: bool(fake.texts(other)), "the other send to arrive")
        await run_sender(path, fake, lambda: outbox_and_digests(path)[1]["sent"] == 1,
                         "the digest sent", bot=bot)
        await busy
    parts = assert_each_part_once_in_order(fake, path)
    db = Database.open(path)
    try:
        uncertain = db._query("SELECT key FROM meta WHERE key LIKE 'digest.uncertain.%'")
    finally:
        db.close()
    assert uncertain == []
    table.row("**A digest's part waits for a busy connection**", f"a digest of {len(parts)} "
              "parts; the bot's one connection held 3 s by another send", len(parts),
              "the part given back until the connection was free, not counted as uncertain: "
              "every part once, in order")


async def test_a_restart_in_the_middle_of_a_digest(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    path = tmp_path / "storywatch.db"
    hold_alerts(path, 70, created=datetime.now(UTC) - timedelta(days=1), times="00:00")
    # First run: stopped (SIGTERM's path: sender.stop) once part 1 has arrived.
    await run_sender(path, fake, lambda: len(digest_texts(fake)) >= 1, "part 1")
    before = len(digest_texts(fake))
    parts = stored_parts(path)
    assert 1 <= before < len(parts), "the stop did not land in the middle of the digest"
    # Second run: the rest, from the first part not recorded as sent.
    await run_sender(path, fake, lambda: outbox_and_digests(path)[1]["sent"] == 1,
                     "the rest of the digest")
    assert_each_part_once_in_order(fake, path)
    table.row("**Restart in the middle of a digest**", f"a digest of {len(parts)} parts, the "
              f"sender stopped after {before} and started again on the same file", len(parts),
              "resumed at the first unsent part: every part once, in order")


async def test_a_crash_while_a_part_is_in_flight(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    path = tmp_path / "storywatch.db"
    hold_alerts(path, 70, created=datetime.now(UTC) - timedelta(days=1), times="00:00")
    db = Database.open(path)
    hung: list[bool] = []

    def on_send(ok: bool, _: float) -> None:
        if ok and not hung:  # part 2 hangs at Telegram and is never delivered
            hung.append(True)
            fake.fail("sendMessage", status=500, description="Internal Server Error",
                      chat_id=CHAT, delay=3.0)

    async with Bot(TOKEN, base_url=fake.api_url) as bot:
        sender = Sender(db, bot, options=OPTIONS, on_send=on_send)
        task = sender.start()
        await until(lambda: bool(hung)
                    and sum(1 for m, _ in fake.requests if m == "sendMessage") >= 2,
                    "part 2 in flight")
        task.cancel()  # the process dies: nothing after this point is written
        await asyncio.gather(task, return_exceptions=True)
    db.close()
    assert outbox_and_digests(path)[1]["sending"] == 1, "the crash should leave the digest claimed"
    await asyncio.sleep(3.2)  # the hung request ends (refused: nothing delivered)
    fake.clear_faults()
    await run_sender(path, fake, lambda: outbox_and_digests(path)[1]["sent"] == 1,
                     "the digest after the crash")
    parts = assert_each_part_once_in_order(fake, path)
    table.row("**Crash while a digest part is in flight**", f"a digest of {len(parts)} parts, "
              "the sender killed during part 2, restarted on the same file", len(parts),
              "the claim recovered at start; resumed at part 2: every part once, in order")


async def test_a_digest_time_missed_while_down_is_sent_once_at_start(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    path = tmp_path / "storywatch.db"
    day0 = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)
    hold_alerts(path, 70, created=day0, times="08:00")
    # The bot was down from day 0 until day 2, 12:00: the 08:00 digests of days 1 and 2
    # passed. At start: one digest, with every held alert.
    clock = [day0 + timedelta(days=2, hours=2)]
    await run_sender(path, fake, lambda: outbox_and_digests(path)[1]["sent"] == 1,
                     "the missed digest", utcnow=lambda: clock[0])
    first = list(digest_texts(fake))
    # Started again, a minute later, then past the next 08:00 with nothing new held.
    for later in (timedelta(minutes=1), timedelta(days=1)):
        clock[0] += later
        until_t = time.monotonic() + 1.5  # a dozen passes of the sender
        await run_sender(path, fake, lambda t=until_t: time.monotonic() > t,  # type: ignore[misc]
                         "a few passes", utcnow=lambda: clock[0])
    assert digest_texts(fake) == first  # not twice
    parts = assert_each_part_once_in_order(fake, path)
    assert "08:00 UTC, 28 Mar 2026" in parts[0]  # the first slot it missed
    table.row("**Digest time passed while the bot was down**", "alerts held for 08:00; "
              "the bot down for two days, then restarted twice", 1,
              "sent once at the first start (one digest for the missed times), "
              "not again at the next starts")
