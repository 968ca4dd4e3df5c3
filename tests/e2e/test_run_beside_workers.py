"""An all-in-one ``storywatch run`` beside a ``storywatch worker`` on one database:
one sender at a time, whichever started first, and every alert delivered once.

Real processes against the local fakes; the sender lease (``leases`` table) names
the process that sends. Runs on both engines (PostgreSQL skipped with the reason
where no server is reachable).
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import TOKEN
from tests.e2e.conftest import BotProcess, wait_until
from tests.e2e.test_workers import CHATS, HEADLINES, newsroom, start_worker
from tests.support.engines import database_env
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer


def test_run_and_a_worker_never_send_at_once_and_hand_the_lease_over(
    engine: str, tmp_path: Path, fake: FakeTelegram
) -> None:
    with FeedServer() as server, database_env(engine) as env:
        feeds, config, db = newsroom(server, env, tmp_path, 3)

        def holder_pid() -> int | None:
            holder = db.lease_holder("sender", datetime.now(UTC))
            return None if holder is None else int(holder.split(":")[1])

        def delivered(count: int) -> bool:
            return all(len(fake.messages(c)) >= count for c in CHATS)

        run = BotProcess(tmp_path, fake, config, env)
        worker = None
        try:
            run.start()
            assert run.proc is not None
            wait_until(lambda: holder_pid() == run.proc.pid, 60, "run to hold the sender lease")
            wait_until(lambda: all(f.primed for f in db.list_feeds()), 60, "feeds primed")
            worker = start_worker(tmp_path, fake, config, env, 0)
            worker_log = tmp_path / "worker-0.log"
            wait_until(lambda: "polling feeds every" in worker_log.read_text(errors="replace"),
                       60, "the worker to start")

            # 1. run holds the lease: the worker polls but never sends.
            for f, headline in zip(feeds, HEADLINES[:3], strict=True):
                f.publish(headline)
            wait_until(lambda: delivered(3), 90, "the first alerts")
            assert holder_pid() == run.proc.pid
            assert "is the sender now" not in worker_log.read_text(errors="replace")

            # 2. run stops (drops the lease): the worker takes over.
            assert run.stop() == 0
            wait_until(lambda: holder_pid() == worker.pid, 60, "the worker to take the lease")
            feeds[0].publish(HEADLINES[3])
            wait_until(lambda: delivered(4), 90, "an alert sent by the worker")

            # 3. run starts again while the worker holds the lease: it does not send.
            run.start()
            feeds[1].publish(HEADLINES[4])
            feeds[2].publish(HEADLINES[5])
            wait_until(lambda: delivered(6), 90, "alerts while both run")
            assert holder_pid() == worker.pid
            assert "is the sender now" not in run.logs[-1].read_text(errors="replace")
            assert run.stop() == 0
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0

            for chat in CHATS:
                texts = fake.texts(chat)
                for headline in HEADLINES:
                    assert sum(headline in t for t in texts) == 1, "\n---\n".join(texts)
            assert fake.count_429() == 0
            counts = db.outbox_counts()
            assert counts["pending"] == counts["sending"] == 0, counts
            assert "is the sender now" in run.logs[0].read_text(errors="replace")
            assert TOKEN not in run.output() + worker_log.read_text(errors="replace")
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
            run.close()
            db.close()
