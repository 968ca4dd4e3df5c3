"""The real ``python -m bot run`` at start and stop: Telegram unreachable at start,
SIGTERM in slow states, and a token-like string at DEBUG.

Exit times are printed into the reliability table, not asserted; what is
asserted is the order of events (the bot had exited while the slow fetch or
send it was in was still going on) and the outcome (exit 0, nothing lost).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.models import Storyline
from bot.storage.repository import Database
from tests.e2e.conftest import ADMIN, BotProcess, Chat, Feed, wait_until
from tests.reliability.conftest import Table
from tests.support.botconfig import write_config
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STORY = "Wang Yi visit to Moscow"


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def count(fake: FakeTelegram, method: str) -> int:
    return sum(1 for m, _ in fake.requests if m == method)


def start_offline(tmp_path: Path, fake: FakeTelegram, config: Path) -> BotProcess:
    """The bot started while getMe fails (BotProcess.start waits for Telegram)."""
    bot = BotProcess(tmp_path, fake, config, {})
    bot.runs += 1
    log = tmp_path / "bot-1.log"
    bot.logs.append(log)
    bot.proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path,
                                env=bot.env(), stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
    return bot


def test_sigterm_while_telegram_is_unreachable(tmp_path: Path, fake: FakeTelegram,
                                               table: Table) -> None:
    fake.fail("getMe", status=502, description="Bad Gateway", times=-1)
    bot = start_offline(tmp_path, fake, write_config(tmp_path, []))
    try:
        wait_until(lambda: count(fake, "getMe") >= 2, what="getMe to fail twice")
        code, took = stop_timed(bot)
    finally:
        bot.close()
    assert code == 0
    table.row(
        "SIGTERM while Telegram is unreachable at start", "the real `python -m bot run`", 1,
        f"exit 0 after {took:.1f} s",
    )


def test_feeds_are_polled_while_telegram_is_unreachable(
    tmp_path: Path, fake: FakeTelegram, feeds: FeedServer, table: Table
) -> None:
    news = Feed(feeds, "/world.xml", "World News")
    news.publish("Markets close higher on Friday", guid="old-1")
    db = Database.open(tmp_path / "data" / "storywatch.db")
    story = db.add_storyline(Storyline(0, STORY), now=datetime.now(UTC))
    db.upsert_chat(42, now=datetime.now(UTC))
    db.subscribe(42, story.id, now=datetime.now(UTC))
    db.close()
    fake.fail("getMe", status=502, description="Bad Gateway", times=-1)
    bot = start_offline(tmp_path, fake, write_config(tmp_path, [news.url]))
    try:
        wait_until(lambda: len(feeds.requests_for(news.path)) >= 2, what="the feed primed")
        news.publish("Wang Yi arrives in Moscow for talks with Lavrov")
        conn = Database.open(tmp_path / "data" / "storywatch.db")
        try:
            wait_until(lambda: conn.outbox_counts()["pending"] == 1,
                       what="the alert queued while Telegram is down")
        finally:
            conn.close()
        sent_while_down = len(fake.messages(42))
        getme_failures = count(fake, "getMe")
        fake.clear_faults()
        wait_until(lambda: len(fake.messages(42)) == 1, timeout=90,
                   what="the alert sent once Telegram answers")
        code = bot.stop()
    finally:
        bot.close()
    assert sent_while_down == 0 and getme_failures >= 1
    assert code == 0
    assert "Wang Yi arrives" in fake.texts(42)[0]
    table.row(
        "**Telegram unreachable at start** (getMe answers 502 until cleared)",
        "the real `python -m bot run`, one feed, one subscribed chat", 1,
        f"the feed primed and polled, the new matching item stored and its alert queued "
        f"while getMe failed {getme_failures} time(s); sent once Telegram answered (was: "
        "no feed polled until getMe succeeded)",
    )


def stop_timed(bot: BotProcess) -> tuple[int, float]:
    started = time.monotonic()
    code = bot.stop()
    return code, time.monotonic() - started


def test_sigterm_during_a_slow_addfeed_does_not_wait_for_the_fetch(
    tmp_path: Path, fake: FakeTelegram, feeds: FeedServer, table: Table
) -> None:
    # 60 chunks, one a second: a fetch that would take a minute.
    feeds.set_route("/slow.xml", Route(body=lambda: (b"<rss>" if i == 0 else b" "
                                                     for i in range(60)), delay=1.0))
    config = write_config(tmp_path, [])
    with config.open("a", encoding="utf-8") as f:
        f.write("\n[fetch]\ndeadline_seconds = 120\n")
    bot = BotProcess(tmp_path, fake, config, {})
    try:
        bot.start()
        fake.user_says(ADMIN, f"/addfeed {feeds.url('/slow.xml')}", user_id=ADMIN)
        wait_until(lambda: len(feeds.requests_for("/slow.xml")) >= 1, what="the fetch")
        time.sleep(1.0)
        code, took = stop_timed(bot)
    finally:
        bot.close()
    assert code == 0
    assert "cut short by shutdown" in bot.output()
    table.row(
        "**SIGTERM during `/addfeed` of a slow feed** (a 60 s trickle, deadline 120 s)",
        "the real `python -m bot run`", 1,
        f"exit 0 after {took:.1f} s, the command cut short and logged (was: 19.7 s, the "
        "whole fetch)",
    )


def test_sigterm_while_telegram_hangs_on_a_send(
    tmp_path: Path, fake: FakeTelegram, feeds: FeedServer, table: Table
) -> None:
    news = Feed(feeds, "/world.xml", "World News")
    news.publish("Markets close higher on Friday", guid="old-1")
    bot = BotProcess(tmp_path, fake, write_config(tmp_path, [news.url]), {})
    try:
        bot.start()
        wait_until(lambda: len(feeds.requests_for(news.path)) >= 2, what="the feed primed")
        Chat(fake, 42).track(STORY)
        fake.fail("sendMessage", status=500, description="slow", chat_id=42, delay=60.0,
                  deliver=False, times=1)
        news.publish("Wang Yi arrives in Moscow for talks with Lavrov")
        wait_until(lambda: len(fake.faults) == 0 or fake.faults[0].remaining == 0,
                   what="the send to hang")
        code, took = stop_timed(bot)
        conn = Database.open(tmp_path / "data" / "storywatch.db")
        counts = conn.outbox_counts()
        conn.close()
    finally:
        bot.close()
    assert code == 0
    assert counts["sent"] == 0 and counts["pending"] + counts["sending"] == 1  # not lost
    table.row(
        "**SIGTERM while Telegram hangs on a send** (answer delayed 60 s)",
        "the real `python -m bot run`", 1,
        f"exit 0 after {took:.1f} s (sender grace 5 s, then cancelled); the alert kept in "
        "the outbox for the next start",
    )


def test_a_token_like_title_is_refused_and_never_logged(
    tmp_path: Path, fake: FakeTelegram, table: Table
) -> None:
    like = "5512345678:AAHfakeTokenShapedSecret_abcdefghijk"
    bot = BotProcess(tmp_path, fake, write_config(tmp_path, [], log_level="DEBUG"), {})
    try:
        bot.start()
        reply = Chat(fake, 42).say(f"/track {like}")
        reply_to = Chat(fake, 43).say("/track", reply_to_text=f"my token is {like} ok")
        code = bot.stop()
    finally:
        bot.close()
    out = bot.output()
    secret_half = like.split(":", 1)[1]
    fragments = [p for p in re.split(r"[^A-Za-z0-9]+", secret_half) if len(p) >= 8]
    assert code == 0
    assert "looks like a Telegram bot token" in reply and like not in reply
    assert "looks like a Telegram bot token" in reply_to
    assert "[debug" in out  # DEBUG really was on
    assert like not in out and all(f not in out for f in fragments)
    table.row(
        "**A token-like string in `/track`** (and in a replied-to message), log level DEBUG",
        "the real `python -m bot run`", 2,
        "refused (\"looks like a Telegram bot token … revoke it with @BotFather\"), nothing "
        "stored; neither the token nor any fragment of its secret half in the DEBUG log "
        "(was: stored, its halves echoed and logged as a storyline's \"names\")",
    )
