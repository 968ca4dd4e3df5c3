"""The ``storywatch`` subcommands on both engines: a SQLite file, or PostgreSQL
chosen by ``STORYWATCH_DATABASE_URL`` (a fresh schema of the local server).

Each command runs as a subprocess, as a user runs it, against a real feed server
on 127.0.0.1; what it stored is read back through the same engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.storage.repository import Database
from tests.support.engines import database_env, open_for_env, postgres_or_skip
from tests.support.feed_server import FeedServer, Route, rss_document

ROOT = Path(__file__).resolve().parents[2]


WIRE = [
    {"guid": "urn:w:2", "title": "Football results", "link": "https://wire.example.test/2",
     "pubDate": "Mon, 18 Sep 2023 10:00:00 GMT"},
    {"guid": "urn:w:1", "title": "Wang Yi arrives in Moscow for talks with Lavrov",
     "link": "https://wire.example.test/1", "description": "Security talks",
     "pubDate": "Mon, 18 Sep 2023 09:00:00 GMT"},
]


@dataclass
class Cli:
    server: FeedServer
    data: Path
    vars: dict[str, str]
    db: Database

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=ROOT, env=self.vars,
            capture_output=True, text=True, timeout=120, check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout


@pytest.fixture
def cli(engine: str, tmp_path: Path) -> Iterator[Cli]:
    with FeedServer() as server, database_env(engine) as db_env:
        server.set_route("/wire", Route(body=rss_document("Wire", WIRE[:1]), etag='"w1"'))
        config = tmp_path / "storywatch.toml"
        config.write_text(f'seeds_dir = "{tmp_path / "no-seeds"}"\n', encoding="utf-8")
        data = tmp_path / "data"
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "STORYWATCH_CONFIG": str(config),
            "STORYWATCH_DATA_DIR": str(data),
            "STORYWATCH_POLL_INTERVAL": "60",
            "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true",
            **db_env,
        }
        db = open_for_env(db_env, data)
        try:
            yield Cli(server, data, variables, db)
        finally:
            db.close()


def test_every_database_command_works_on_the_configured_engine(cli: Cli, engine: str) -> None:
    added = cli.ok("feeds", "add", cli.server.url("/wire"))
    assert added.startswith("added feed "), added
    feed_id = int(added.split()[2].rstrip(":"))
    story = cli.ok("storylines", "add", "Wang Yi visit to Moscow for talks with Lavrov")
    sid = int(story.split()[2].rstrip(":"))
    assert f"{sid}  Wang Yi visit to Moscow" in cli.ok("storylines", "list")

    first = cli.ok("poll", "--once", "--force")
    assert "total: 1 feed polled, 0 failed, 1 new item," in first, first
    cli.server.set_route("/wire", Route(body=rss_document("Wire", WIRE), etag='"w2"'))
    polled = cli.ok("poll", "--once", "--force")
    assert "total: 1 feed polled, 0 failed, 1 new item, 1 match," in polled, polled
    # Written through the subprocess's engine, read back through this one.
    assert cli.db.item_count(feed_id) == 2
    listed = cli.ok("feeds", "list")
    assert f"{feed_id:>4}  Wire  {cli.server.url('/wire')}  [ok, last " in listed

    shown = cli.ok("matches", "--since", "1d")
    assert "Wang Yi arrives in Moscow for talks with Lavrov — Wire" in shown, shown
    assert f"#{sid} " in shown and "Football" not in shown
    timeline = cli.ok("timeline", str(sid))
    assert "Wang Yi arrives in Moscow" in timeline, timeline

    exported = cli.ok("feeds", "export")
    assert cli.server.url("/wire") in exported
    assert cli.ok("storylines", "remove", str(sid)).startswith(f"removed storyline {sid}")
    assert cli.ok("feeds", "remove", str(feed_id)) == f"removed feed {feed_id}\n"
    assert cli.db.list_feeds() == []

    seed_file = cli.data.parent / "doc.txt"
    seed_file.write_text("Wang Yi met Sergei Lavrov in Moscow. Wang Yi and Lavrov discussed "
                         "security. Lavrov said Moscow values the talks.", encoding="utf-8")
    assert cli.ok("seed", str(seed_file)).startswith(f"# {seed_file}")


def test_health_reads_the_configured_engine(cli: Cli) -> None:
    before = cli.run("health")
    assert before.returncode == 1
    if "STORYWATCH_DATABASE_URL" in cli.vars:
        # The schema is there (migrated by the fixture) but nothing ran yet.
        assert before.stdout.strip() == (
            "unhealthy: no poll pass yet; no successful Telegram call yet")
    cli.ok("poll", "--once")  # an empty pass still records itself
    after_poll = cli.run("health")
    assert after_poll.returncode == 1
    assert after_poll.stdout.strip() == "unhealthy: no successful Telegram call yet"

    now = datetime.now(UTC)
    cli.db.set_meta("telegram_ok", now.isoformat())
    assert cli.ok("health").strip() == "healthy"

    cli.db.set_meta("internal_errors.last_poll", "2")
    bad = cli.run("health")
    assert bad.returncode == 1 and "2 feed(s) failed with an internal error" in bad.stdout
    cli.db.set_meta("internal_errors.last_poll", "0")

    cli.db.set_meta("last_poll", (now - timedelta(hours=1)).isoformat())
    stale = cli.run("health")
    assert stale.returncode == 1 and stale.stdout.startswith("unhealthy: no poll pass for 3,")


def test_health_on_an_unreachable_server_names_it_without_the_password(tmp_path: Path) -> None:
    postgres_or_skip()  # the psycopg import the check needs
    config = tmp_path / "storywatch.toml"
    config.write_text("", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "health"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False, env={
            "PATH": os.environ.get("PATH", ""), "STORYWATCH_CONFIG": str(config),
            "STORYWATCH_DATA_DIR": str(tmp_path / "data"),
            # Port 1 on the loopback: nothing listens, the connection is refused.
            "STORYWATCH_DATABASE_URL": "postgresql://sw:hunter2secret@127.0.0.1:1/test",
        },
    )
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy: cannot read PostgreSQL at 127.0.0.1:1/test: ")
    assert "hunter2secret" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "storywatch.db").exists()
