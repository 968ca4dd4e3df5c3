"""Telegram faults over 1,000 alerts: the real Sender, a real SQLite outbox, the
fake Bot API over real HTTP with faults injected.

100 chats (70 private, 30 groups) follow one storyline; 10 items make 1,000
outbox rows. Faults: a 429 storm, blocked chats (403), migrated groups, 400
"can't parse entities", 500/502, time-outs (delivered or not) and dropped
connections (before or after delivery). Each faulty chat meets its fault once,
as in life; the storm hits whoever sends first.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.ratelimit import SendLimiter, SendLimits
from bot.delivery.sender import UNCERTAIN_TOTAL_KEY, Sender, SenderOptions
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.conftest import TOKEN
from tests.reliability.conftest import Table
from tests.support.fake_telegram import FakeTelegram, validate_telegram_html

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")

ITEMS = 10
PRIVATE = list(range(1, 71))
GROUPS = [-1000 - i for i in range(1, 31)]
CHATS = PRIVATE + GROUPS
BLOCKED = [1, 2, 3, 4, 5, -1001]
MIGRATED = {-1002: -2002, -1003: -2003, -1004: -2004, -1005: -2005}
ENTITY_400 = [10, 11, 12, 13, 14, -1010]
BAD_GATEWAY = [15, 16, 17, 18, 19, -1015]  # 502 twice
SERVER_500 = [20, 21, 22, 23, 24]
TIMEOUT_DELIVERED = [30, 31, 32, 33, 34]  # arrives, but the answer comes too late
TIMEOUT_LOST = [35, 36, 37]  # never arrives, the client times out
DROP_AFTER = [40, 41, 42, 43, 44]  # arrives, then the connection drops
DROP_BEFORE = [45, 46, 47, 48, 49]  # connection drops before anything happens
STORM = 80  # 429 retry_after=1 for the first 80 sends, whoever they are for
HANG = 10.0  # the injected hangs: longer than the send timeout below

# The send timeout leaves a loaded machine room (a send that is merely slow must not
# count as a timeout: the figures below are exact); the injected hangs outlast it.
OPTIONS = SenderOptions(
    batch=200, send_timeout=8.0, uncertain_delay=0.3, backoff_base=0.05, idle_poll=0.05,
    max_hold=0.5, max_attempts=6,
)
# Generous limits so 1,000 sends take seconds; the limiter itself is tested elsewhere.
LIMITS = SendLimits(per_chat=1000, per_chat_window=1.0, per_group=1000, per_group_window=1.0,
                    overall=100_000, overall_window=1.0, overall_gap=0.0)


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = Bot(TOKEN, base_url=fake.api_url, request=HTTPXRequest(connection_pool_size=64))
    async with b:
        yield b


def _fill_outbox(db: Database) -> None:
    now = datetime.now(UTC)
    feed = db.add_feed("http://127.0.0.1:9/feed.xml", now=now, title="Feed")
    db.commit_poll(feed.id, FeedState(), now=now, title="Feed", items=[], matches=[])
    story = db.add_storyline(Storyline(0, "Wang Yi visit"), now=now, created_by=CHATS[0])
    for c in CHATS:
        db.upsert_chat(c, now=now, type_="private" if c > 0 else "group")
        db.subscribe(c, story.id, now=now)
    items, matches = [], []
    for n in range(ITEMS):
        key = f"k{n}"
        # Published a week apart: ten developments, never collapsed as duplicates.
        published = datetime(2024, 1, 1 + 7 * (n % 4), tzinfo=UTC).replace(month=1 + n // 4)
        items.append(Item(key, f"Headline {n} <&> Wang Yi", "Summary & <more>",
                          f"https://e.org/{key}", published, "Src", feed.id))
        matches.append(MatchToStore(Match(key, story.id, 1.0, "Wang Yi, visit")))
    db.commit_poll(feed.id, FeedState(), now=now, title="Feed", items=items, matches=matches)


def _inject(fake: FakeTelegram) -> None:
    fake.blocked.update(BLOCKED)
    fake.migrated.update(MIGRATED)
    fake.rate_limit(1, times=STORM)
    for c in ENTITY_400:
        fake.fail("sendMessage", chat_id=c, status=400,
                  description="Bad Request: can't parse entities: unsupported start tag")
    for c in BAD_GATEWAY:
        fake.fail("sendMessage", chat_id=c, status=502, description="Bad Gateway", times=2)
    for c in SERVER_500:
        fake.fail("sendMessage", chat_id=c, status=500, description="Internal Server Error")
    for c in TIMEOUT_DELIVERED:
        fake.fail("sendMessage", chat_id=c, status=200, description="", delay=HANG, deliver=True)
    for c in TIMEOUT_LOST:
        fake.fail("sendMessage", chat_id=c, status=504, description="Gateway Timeout", delay=HANG)
    for c in DROP_AFTER:
        fake.fail("sendMessage", chat_id=c, status=200, description="", deliver=True, drop=True)
    for c in DROP_BEFORE:
        fake.fail("sendMessage", chat_id=c, status=200, description="", drop=True)


def _headline(text: str) -> int:
    found = re.search(r"Headline (\d+) ", text)
    assert found is not None, text
    return int(found.group(1))


async def _until(cond: object, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end and not cond():  # type: ignore[operator]
        await asyncio.sleep(0.05)


async def test_thousand_alerts_through_telegram_faults(
    fake: FakeTelegram, db: Database, bot: Bot, table: Table
) -> None:
    _fill_outbox(db)
    assert sum(db.outbox_counts().values()) == len(CHATS) * ITEMS == 1000
    _inject(fake)
    sender = Sender(db, bot, options=OPTIONS, limiter=SendLimiter(LIMITS))
    sender.start()

    def settled() -> bool:
        c = db.outbox_counts()
        return c["pending"] == 0 and c["sending"] == 0

    try:
        await _until(settled, 180)
    finally:
        await sender.stop(grace=10)
    counts = db.outbox_counts()
    assert settled(), counts

    live = [MIGRATED.get(c, c) for c in CHATS if c not in BLOCKED]
    delivered: dict[int, Counter[str]] = {}
    for c in live:
        delivered[c] = Counter(_headline(t) for t in fake.texts(c))
    lost = [(c, n) for c in live for n in range(ITEMS) if not delivered[c][n]]
    duplicates = sum(n - 1 for c in live for n in delivered[c].values() if n > 1)
    uncertain = int(db.get_meta(UNCERTAIN_TOTAL_KEY) or 0)
    dup_chats = {c for c in live if any(n > 1 for n in delivered[c].values())}

    # 0 lost: every alert of every live chat arrived; no row failed.
    assert lost == [], (counts, len(fake.sent), Counter(r[2] for r in fake.refused), lost[:3])
    assert counts["failed"] == 0 and counts["sent"] == len(live) * ITEMS
    assert counts["dropped"] == len(BLOCKED) * ITEMS
    # 0 sent to a dead chat: nothing arrived there, and after its 403 no attempt.
    attempts = Counter(int(p["chat_id"]) for m, p in fake.requests if m == "sendMessage")
    assert all(fake.texts(c) == [] for c in BLOCKED)
    held = Counter(r[1] for r in fake.refused if r[2] == 429)  # the storm came first
    assert all(attempts[c] - held[c] == 1 for c in BLOCKED), {c: attempts[c] for c in BLOCKED}
    assert all(fake.texts(old) == [] for old in MIGRATED)
    # Duplicates only where a send reached Telegram but its answer did not, counted.
    assert dup_chats <= set(TIMEOUT_DELIVERED + DROP_AFTER), dup_chats
    assert duplicates == len(TIMEOUT_DELIVERED) + len(DROP_AFTER)
    assert duplicates <= uncertain
    # Every injected uncertainty is counted. On a loaded machine a few more were (20-22):
    # sends that had waited past the pool's time-out for one of the 64 connections were
    # taken as uncertain, though they never left; they are now given back instead. A
    # send slower than the time-out is still counted and retried once, which costs no
    # loss and, as the asserts above show, no extra duplicate.
    assert uncertain >= len(TIMEOUT_DELIVERED + TIMEOUT_LOST + DROP_AFTER + DROP_BEFORE)
    # Every message is valid Telegram HTML, or the plain-text fallback after a 400.
    for c in live:
        for m in fake.messages(c):
            if m.parse_mode == "HTML":
                assert validate_telegram_html(m.text) is None
            else:
                assert c in ENTITY_400 and "Headline" in m.text and "<&>" in m.text
    storm = sum(1 for r in fake.refused if r[2] == 429)
    assert storm == STORM
    table.row(
        "Telegram faults: 429 storm (80), 403 blocked (6 chats), group migration (4), "
        "400 can't parse entities (6), 502×2 (6), 500 (5), time-out delivered (5) and not "
        "(3), dropped connection after (5) and before (5) delivery",
        "real Sender + SQLite outbox → fake Bot API over HTTP; 100 chats × 10 alerts",
        sum(len(CHATS) * ITEMS for _ in [0]),
        f"{counts['sent']} sent, 0 lost, 0 failed, {counts['dropped']} dropped for blocked "
        f"chats (1 attempt each, 0 delivered), 0 to old group ids; {duplicates} duplicates, "
        f"all where a send arrived but its answer did not, {uncertain} uncertain sends "
        "counted in meta",
    )
