"""Outbox claims under a held write lock: recovered while running, never resent
once delivered.

The real sender talks to the fake Bot API over HTTP; the lock is held by
another process (``lock_holder``) right after Telegram accepted a message, so
writing 'sent' fails past every retry, as under the 70 s lock the review used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from telegram import Bot

from bot.delivery.sender import Sender, SenderOptions
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.conftest import TOKEN
from tests.reliability.conftest import Table
from tests.support.fake_telegram import FakeTelegram
from tests.support.lock_holder import LockHolder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")

# A send time-out that a loaded machine cannot run out: the lock holder is a process
# started from ``on_send``, which holds the event loop while it starts, and a send
# delivered but timed out would be an uncertain resend, not what this test is about.
OPTIONS = SenderOptions(send_timeout=10.0, backoff_base=0.1, idle_poll=0.1, max_hold=1.5,
                        claim_lease=1.0, lease_check=0.1)


def queue_alerts(db: Database, chats: list[int], count: int) -> None:
    now = datetime.now(UTC)
    feed = db.add_feed("http://127.0.0.1:9/feed.xml", now=now, title="Feed")
    db.commit_poll(feed.id, FeedState(), now=now, title="Feed", items=[], matches=[])
    story = db.add_storyline(Storyline(0, "Wang Yi visit"), now=now)
    for c in chats:
        db.upsert_chat(c, now=now)
        db.subscribe(c, story.id, now=now)
    items = [Item(f"k{n}", f"Headline {n}", "", f"https://e.org/{n}", now, "Src", feed.id)
             for n in range(count)]
    db.commit_poll(feed.id, FeedState(), now=now, title="Feed", items=items,
                   matches=[MatchToStore(Match(i.key, story.id, 1.0, "why")) for i in items])


async def until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end and not cond():
        await asyncio.sleep(0.05)
    assert cond(), f"timed out waiting for {what}"


async def test_delivered_alerts_are_recorded_after_the_lock_and_never_resent(
    tmp_path: Path, fake: FakeTelegram, table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "storywatch.db"
    db = Database.open(path, busy_timeout=0.2, lock_attempts=2)
    chats = [101, 102, 103, 104, 105, 106]
    queue_alerts(db, chats, 5)  # 30 alerts
    holders: list[LockHolder] = []
    oks: list[bool] = []

    def on_send(ok: bool, seconds: float) -> None:
        # Right after the 3rd message reached Telegram, another process takes the
        # write lock for 3 s: 'sent' cannot be written for that message and others.
        oks.append(ok)
        if oks.count(True) == 3 and not holders:
            holders.append(LockHolder(path, 3.0))

    async with Bot(TOKEN, base_url=fake.api_url) as bot:
        sender = Sender(db, bot, options=OPTIONS, on_send=on_send)
        sender.start()
        try:
            await until(lambda: db.outbox_counts()["sent"] == 30, "every alert sent")
        finally:
            await sender.stop()
            for h in holders:
                await asyncio.to_thread(h.release)
    delivered = [(m.chat_id, m.text) for m in fake.sent]
    unrecorded = [r for r in caplog.records if "delivered but cannot be recorded" in r.message]
    db.close()
    assert holders, "the lock was never taken"
    assert unrecorded, "no write of 'sent' failed: the test did not exercise the fault"
    assert len(delivered) == 30 and len(set(delivered)) == 30  # no duplicate
    table.row(
        "**Write lock held by another process while sending** (3 s, busy time-out 0.2 s "
        "x 2 attempts)", "30 alerts to 6 chats, the lock taken after the 3rd delivery", 30,
        f"{len(unrecorded)} deliveries whose 'sent' could not be written were kept in "
        "memory and recorded after the lock; 30 delivered, **0 duplicates**, 0 left "
        "'sending'",
    )


async def test_expired_claims_are_sent_while_running_not_after_a_restart(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    db = Database.open(tmp_path / "storywatch.db")
    queue_alerts(db, [201], 3)
    # Claimed ten minutes ago by a sender whose outcome writes all failed.
    stale = db.claim_due_alerts(datetime.now(UTC) - timedelta(minutes=10), 10)
    assert len(stale) == 3 and db.outbox_counts()["sending"] == 3
    async with Bot(TOKEN, base_url=fake.api_url) as bot:
        sender = Sender(db, bot, options=OPTIONS)
        sender.start()
        try:
            await until(lambda: db.outbox_counts()["sent"] == 3, "the stale claims sent")
        finally:
            await sender.stop()
    counts = db.outbox_counts()
    db.close()
    assert counts["sending"] == 0 and len(fake.messages(201)) == 3
    table.row(
        "Claims left 'sending' by failed writes", "3 alerts claimed 10 min earlier, a "
        "running sender (lease 1 s)", 3,
        "given back by the lease and delivered without a restart, once each",
    )
