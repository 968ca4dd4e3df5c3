"""End-to-end harness: the real ``storywatch run`` process against local fakes.

``BotProcess`` starts ``python -m bot run`` with the environment a deployment
would set, pointed at :class:`FakeTelegram` (the Bot API) and a
:class:`FeedServer` (the news feeds), both on 127.0.0.1. Tests talk to the bot
as users would (``fake.user_says``) and look at what Telegram received.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot.storage.repository import Database
from tests.conftest import TOKEN
from tests.support.botconfig import write_config
from tests.support.engines import database_env, open_for_env
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document

ADMIN = 1001
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Feed:
    """A feed on the local feed server whose items tests add one by one."""

    server: FeedServer
    path: str
    title: str
    items: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def publish(self, title: str, summary: str = "", guid: str | None = None,
                source: str | None = None) -> None:
        n = len(self.items) + 1
        item = {
            "guid": guid or f"{self.path}-{n}",
            "title": title,
            "link": f"https://news.example.test{self.path}/{n}",
            "description": summary or title,
            "pubDate": format_datetime(datetime.now(UTC), usegmt=True),
        }
        if source is not None:
            item["source"] = source  # the outlet, as an aggregator names it
        self.items.insert(0, item)
        self.server.set_route(self.path, Route(body=rss_document(self.title, self.items)))


class BotProcess:
    """One ``storywatch run`` process; start it again after a stop to "restart"."""

    def __init__(self, tmp: Path, fake: FakeTelegram, config: Path, extra_env: dict[str, str]):
        self.tmp = tmp
        self.fake = fake
        self.config = config
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.logs: list[Path] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STORYWATCH_", "TELEGRAM_", "HTTP_PROXY", "HTTPS_PROXY"))}
        env.update({
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "STORYWATCH_TELEGRAM_API_URL": self.fake.api_url,
            "STORYWATCH_TELEGRAM_FILE_URL": self.fake.file_url,
            "STORYWATCH_DATA_DIR": str(self.tmp / "data"),
            "STORYWATCH_CONFIG": str(self.config),
            "STORYWATCH_POLL_INTERVAL": "1",
            "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true",
            "STORYWATCH_ADMINS": str(ADMIN),
            "NO_PROXY": "127.0.0.1",
            "PYTHONPATH": str(REPO),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> BotProcess:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        log = self.tmp / f"bot-{self.runs}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=self.tmp,
            env=self.env(),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            # Its own process group, with its parse pool's worker and the resource
            # tracker: a kill or close takes them all (see _reap).
            start_new_session=True,
        )
        # Ready once it has registered its commands (it did getMe before that).
        self.fake.wait_for(
            lambda: self.proc is not None and (
                self.proc.poll() is not None
                or sum(1 for m, _ in self.fake.requests if m == "getUpdates") > self._polls
            ),
            timeout=60, what="the bot to start long polling",
        )
        assert self.proc.poll() is None, self.output()
        return self

    @property
    def _polls(self) -> int:
        return getattr(self, "_polls_at_start", 0)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._reap()
        self._polls_at_start = sum(1 for m, _ in self.fake.requests if m == "getUpdates")
        return code

    def kill(self) -> None:
        """A crash, as a container or service manager sees one: the bot and every
        process it started die at once (SIGKILL to its process group)."""
        assert self.proc is not None
        self._reap()
        self.proc.wait(timeout=30)
        self._polls_at_start = sum(1 for m, _ in self.fake.requests if m == "getUpdates")

    def _reap(self) -> None:
        # A bot killed outright leaves its parse pool's worker and resource tracker
        # running until the worker sees it gone; the group's kill ends them at once.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def open_database(self) -> Database:
        """The database this bot uses (SQLite in WAL mode: a test may read beside it)."""
        return open_for_env(self.extra_env, self.tmp / "data")

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def close(self) -> None:
        if self.proc is not None:
            self._reap()
            self.proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def save_transcript(request: pytest.FixtureRequest, fake: FakeTelegram) -> Iterator[None]:
    """With STORYWATCH_TRANSCRIPTS=DIR, write what the fake Bot API saw in each test
    (updates in, messages out) to DIR/<test>.txt."""
    yield
    where = os.environ.get("STORYWATCH_TRANSCRIPTS")
    if where:
        out = Path(where)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{request.node.name}.txt").write_text(fake.transcript() + "\n", encoding="utf-8")


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def news(feeds: FeedServer) -> Feed:
    feed = Feed(feeds, "/world.xml", "World News")
    feed.publish("Markets close higher on Friday", guid="old-1")
    return feed


@pytest.fixture
def bot(tmp_path: Path, fake: FakeTelegram, news: Feed, engine: str) -> Iterator[BotProcess]:
    """``storywatch run`` on each engine (its database in a fresh schema on PostgreSQL)."""
    with database_env(engine) as env:
        yield from _bot(tmp_path, fake, news, env)


def _bot(tmp_path: Path, fake: FakeTelegram, news: Feed,
         env: dict[str, str]) -> Iterator[BotProcess]:
    process = BotProcess(tmp_path, fake, write_config(tmp_path, [news.url]), env)
    try:
        process.start()
        # The first good poll of a feed stores its items without alerting (no
        # backlog flood); a second request means the first one was committed.
        wait_until(lambda: len(news.server.requests_for(news.path)) >= 2,
                   what="the feed to be primed")
        yield process
    finally:
        process.close()
        assert TOKEN not in process.output(), "the token leaked into the logs"


class Chat:
    """A user (or group) talking to the bot through the fake server."""

    def __init__(self, fake: FakeTelegram, chat_id: int, user_id: int | None = None,
                 chat_type: str | None = None) -> None:
        self.fake = fake
        self.chat_id = chat_id
        self.user_id = user_id if user_id is not None else abs(chat_id)
        self.chat_type = chat_type
        self.last_id = 0  # message id of the last thing this user said

    def send(self, text: str, reply_to_text: str | None = None) -> int:
        """Say ``text`` without waiting; returns its message id."""
        self.last_id = self.fake.user_says(self.chat_id, text, user_id=self.user_id,
                                           chat_type=self.chat_type, reply_to_text=reply_to_text)
        return self.last_id

    def say(self, text: str, reply_to_text: str | None = None, timeout: float = 30) -> str:
        """Send ``text`` and return the bot's reply (the next message that is not an alert:
        replies and alerts share the chat's send budget, so an alert may come first)."""
        before = len(self.fake.messages(self.chat_id))
        self.send(text, reply_to_text)

        def replies() -> list[str]:
            return [t for t in self.fake.texts(self.chat_id)[before:] if not t.startswith("📰")]

        self.fake.wait_for(lambda: bool(replies()), timeout, f"a reply in chat {self.chat_id}")
        return replies()[0]

    def track(self, title: str, timeout: float = 30) -> str:
        """``/track TITLE``, then Track it under the preview, as a user does. Returns
        the preview once edited into the outcome ("Tracking #N: ..."), or the reply
        itself when it came without a Track it button (a refusal)."""
        reply = self.say(f"/track {title}", timeout=timeout)
        msg = next(m for m in reversed(self.fake.messages(self.chat_id)) if m.current == reply)
        rows = (msg.markup or {}).get("inline_keyboard", [])
        data = next((str(b["callback_data"]) for row in rows for b in row
                     if b["text"] == "Track it"), None)
        if data is None:
            return reply
        self.fake.press(self.chat_id, msg.message_id, data, user_id=self.user_id)
        self.fake.wait_for(lambda: msg.current != reply, timeout,
                           f"Track it to be answered in chat {self.chat_id}")
        return msg.current

    def texts(self) -> list[str]:
        return self.fake.texts(self.chat_id)

    def alerts(self) -> list[str]:
        return [t for t in self.texts() if t.startswith("📰")]


def wait_until(cond: object, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    assert cond(), f"timed out waiting for {what}"  # type: ignore[operator]
