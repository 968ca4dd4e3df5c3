"""Several ``storywatch worker`` processes on one database, against the local fakes.

Three workers share the feeds (leases) and one of them delivers (the sender
lease); the sender is killed with SIGKILL mid-run and another takes over: every
alert reaches its chat exactly once. Runs on both engines (PostgreSQL skipped
with the reason where no server is reachable).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.models import Storyline
from bot.storage.repository import Database
from tests.conftest import TOKEN
from tests.e2e.conftest import REPO, Feed, wait_until
from tests.support.botconfig import write_config
from tests.support.engines import database_env, open_for_env
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer

STORY = "Wang Yi visit to Moscow"
HEADLINES = [
    "Chinese Foreign Minister Wang Yi arrives in Moscow for a visit",
    "Wang Yi and Lavrov sign energy agreement during Moscow visit",
    "Kremlin says Putin will receive Wang Yi on Thursday in Moscow",
    "Wang Yi ends Moscow visit with joint statement on grain exports",
    "Protesters gather outside embassy as Wang Yi visits Moscow",
    "Wang Yi meets Russian business leaders at the end of his Moscow visit",
]
CHATS = (501, 502)
FEEDS = 6


def start_worker(tmp: Path, fake: FakeTelegram, config: Path, env_extra: dict[str, str],
                 n: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STORYWATCH_", "TELEGRAM_", "HTTP_PROXY", "HTTPS_PROXY"))}
    env.update({
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "STORYWATCH_TELEGRAM_API_URL": fake.api_url,
        "STORYWATCH_DATA_DIR": str(tmp / "data"),
        "STORYWATCH_CONFIG": str(config),
        "STORYWATCH_POLL_INTERVAL": "1",
        "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "NO_PROXY": "127.0.0.1",
        "PYTHONPATH": str(REPO),
        **env_extra,
    })
    # A sender lease of 15 s: a worker stalled a few seconds on a loaded machine (another
    # bot starting beside it) keeps it. A killed holder is replaced at once whatever the
    # lease (its pid is gone), which is what the takeovers here test.
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "worker", "--feed-lease", "4", "--sender-ttl", "15",
         "--claim-lease", "5", "--batch", "2"],
        cwd=tmp, env=env, stdout=(tmp / f"worker-{n}.log").open("wb"),
        stderr=subprocess.STDOUT,
        # Its own process group: a SIGKILL takes its parse pool's worker too.
        start_new_session=True,
    )


def newsroom(server: FeedServer, env: dict[str, str], tmp: Path,
             n: int) -> tuple[list[Feed], Path, Database]:
    """``n`` feeds with an old item each, the config watching them, and the database
    with the storyline both CHATS follow."""
    feeds = [Feed(server, f"/f{i}.xml", f"Feed {i}") for i in range(n)]
    for f in feeds:
        f.publish(f"Old news {f.path}", guid=f"{f.path}-old")
    config = write_config(tmp, [f.url for f in feeds])
    db = open_for_env(env, tmp / "data")
    now = datetime.now(UTC)
    story = db.add_storyline(Storyline(id=0, title=STORY, shared=True, slug="wang-yi"), now=now)
    for chat in CHATS:
        db.upsert_chat(chat, now=now)
        db.subscribe(chat, story.id, now=now)
    return feeds, config, db


def test_three_workers_share_feeds_and_survive_the_sender_killed(
    engine: str, tmp_path: Path, fake: FakeTelegram
) -> None:
    with FeedServer() as server, database_env(engine) as env:
        feeds, config, db = newsroom(server, env, tmp_path, FEEDS)
        workers = [start_worker(tmp_path, fake, config, env, n) for n in range(3)]
        try:
            wait_until(lambda: all(f.primed for f in db.list_feeds())
                       and len(db.list_feeds()) == FEEDS, 90, "every feed primed")
            for f, headline in zip(feeds[:3], HEADLINES, strict=False):
                f.publish(headline)
            # Killed between a send and its 'sent' record, a sender's alert goes out
            # again (at least once, by design): kill it once those are recorded.
            wait_until(lambda: db.outbox_counts()["sent"] >= 3 * len(CHATS), 90,
                       "the first alerts recorded as sent")
            holder = db.lease_holder("sender", datetime.now(UTC))
            assert holder is not None
            pid = int(holder.split(":")[1])
            victim = next(w for w in workers if w.pid == pid)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
            for f, headline in zip(feeds[3:], HEADLINES[3:], strict=False):
                f.publish(headline)
            wait_until(lambda: all(len(fake.messages(c)) >= 6 for c in CHATS), 120,
                       "the alerts after the sender was killed")
            survivors = [w for w in workers if w is not victim]
            for w in survivors:
                w.send_signal(signal.SIGTERM)
            codes = [w.wait(timeout=60) for w in survivors]
            for chat in CHATS:
                texts = fake.texts(chat)
                for headline in HEADLINES:
                    assert sum(headline in t for t in texts) == 1, "\n---\n".join(texts)
            assert codes == [0, 0]
            counts = db.outbox_counts()
            assert counts["pending"] == counts["sending"] == 0, counts
            logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
            assert "is the sender now" in logs
            assert TOKEN not in logs
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait(timeout=30)
            db.close()
