"""Crash safety: the real ``python -m bot run`` killed with SIGKILL at random
moments of polling and sending, 20 times, restarted each time, while the feed
keeps publishing new matching items.

Afterwards every alert that should exist has been delivered to both chats,
duplicates are no more than the kills, and the database passes
``PRAGMA integrity_check``. The RNG is seeded, so the kill times repeat.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN, TOKEN, BotProcess, Chat, wait_until, write_config
from tests.reliability.conftest import Table
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SEED = 20240501
KILLS = 20
STORY = "Wang Yi visit to Moscow"
TOPICS = [
    "energy deal", "grain exports", "Arctic shipping", "nuclear talks", "visa rules",
    "bank payments", "Ukraine peace plan", "rail corridor", "space cooperation",
    "gas pipeline", "student exchange", "tourism flows", "military drills",
    "yuan settlement", "fertiliser supply", "wheat quotas", "satellite launch", "oil prices",
]
PATH = "/world.xml"
BASE = datetime(2023, 1, 1, tzinfo=UTC)


def headline(n: int) -> str:
    return f"Wang Yi in Moscow visit: {TOPICS[n % len(TOPICS)]} discussed, report {n}"


class Publisher:
    """Publishes a new matching item every ``every`` seconds until stopped.

    Items are dated three days apart, so none is collapsed into another as the
    same development: each one must become its own alert.
    """

    def __init__(self, server: FeedServer, every: float) -> None:
        self.server = server
        self.every = every
        self.items: list[dict[str, str]] = []
        self.published: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish(self, n: int, title: str | None = None) -> None:
        self.items.insert(0, {
            "guid": f"item-{n}", "title": title or headline(n),
            "link": f"https://news.example.test/world/{n}",
            "description": title or headline(n),
            "pubDate": format_datetime(BASE + timedelta(days=3 * n), usegmt=True),
        })
        self.server.set_route(PATH, Route(body=rss_document("World News", self.items[:200])))
        if title is None:
            self.published.append(n)

    def _run(self) -> None:
        n = 1
        while not self._stop.wait(self.every):
            self.publish(n)
            n += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_sigkill_at_random_moments_loses_nothing(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    rng = random.Random(SEED)
    with FeedServer() as server:
        pub = Publisher(server, every=1.2)
        pub.publish(0, title="Markets close higher on Friday")
        url = server.url(PATH)
        # A matching item every 1.2 s is a storm by the default hourly bound; this
        # test is about crashes, so every item must become its own alert.
        config = write_config(tmp_path, [url], alerts_per_storyline_hour=10_000)
        bot = BotProcess(tmp_path, fake, config, {})
        try:
            bot.start()
            wait_until(lambda: len(server.requests_for(PATH)) >= 2, what="the feed primed")
            alice, group = Chat(fake, 901), Chat(fake, -100901, user_id=902)
            sid = alice.track(STORY).split("#")[1].split(":")[0]
            # Alice's storyline is hers until an admin shares it; in the group, only an
            # administrator may subscribe.
            assert Chat(fake, ADMIN).say(f"/share {sid}").startswith(f"Shared #{sid}")
            fake.chat_admins[group.chat_id] = {group.user_id}
            assert "Following" in group.say(f"/subscribe {sid}")
            pub.start()
            kills = 0
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.2, 2.0))  # somewhere in a poll or a send
                bot.kill()
                kills += 1
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.1, 1.0))  # items pile up while it is down
                bot.start()
            pub.stop()
            expected = list(pub.published)

            def delivered(chat: Chat) -> Counter[int]:
                found = (re.search(r"report (\d+)", t) for t in chat.alerts())
                return Counter(int(m.group(1)) for m in found if m)

            wait_until(
                lambda: all(set(expected) <= set(delivered(c)) for c in (alice, group)),
                timeout=180, what="every published item alerted in both chats",
            )
            assert bot.stop(signal.SIGTERM) == 0, bot.output()[-3000:]
        finally:
            pub.stop()
            bot.close()
        assert TOKEN not in bot.output()

    per_chat = {c.chat_id: delivered(c) for c in (alice, group)}
    duplicates = sum(n - 1 for counts in per_chat.values() for n in counts.values())
    missing = [(chat, n) for chat, counts in per_chat.items() for n in expected if not counts[n]]
    assert missing == []
    assert duplicates <= kills, per_chat
    conn = sqlite3.connect(tmp_path / "data" / "storywatch.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
        assert set(statuses) == {"sent"}, statuses
    finally:
        conn.close()
    table.row(
        "Crash safety: SIGKILL at random moments (seed 20240501) of the real "
        "`python -m bot run`, restarted each time, feed publishing a matching item every 1.2 s",
        f"{kills} kills, 2 chats", len(expected) * 2,
        f"{len(expected)} items × 2 chats all delivered, {duplicates} duplicates "
        f"(≤ {kills} kills), outbox all 'sent', PRAGMA integrity_check ok",
    )
