"""Fixtures shared across the test folders: a real SQLite database and the fake Bot API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage.repository import Database
from tests.support.engines import ENGINES, open_engine
from tests.support.fake_telegram import FakeTelegram

# The token the fake Bot API accepts; tests check it never leaks into output.
TOKEN = "123:TEST"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The database engine a test runs on: each test using it runs on both."""
    return str(request.param)


@pytest.fixture
def db(engine: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database: a file in the test's own directory (SQLite), or
    a schema of its own on the local PostgreSQL server, dropped afterwards."""
    with open_engine(engine, tmp_path) as database:
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A SQLite database file, for tests of what only SQLite has (PRAGMAs, files)."""
    with open_engine("sqlite", tmp_path) as database:
        yield database


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    """The fake Telegram Bot API on 127.0.0.1."""
    with FakeTelegram(TOKEN) as server:
        yield server
