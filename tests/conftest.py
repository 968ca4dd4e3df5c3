"""Fixtures shared across the test folders: a real SQLite database and the fake Bot API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage.repository import Database
from tests.support.fake_telegram import FakeTelegram

# The token the fake Bot API accepts; tests check it never leaks into output.
TOKEN = "123:TEST"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database file in the test's own directory."""
    database = Database.open(tmp_path / "data" / "storywatch.db")
    yield database
    database.close()


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    """The fake Telegram Bot API on 127.0.0.1."""
    with FakeTelegram(TOKEN) as server:
        yield server
