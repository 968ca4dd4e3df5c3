"""Start-up work that takes seconds (loading the model, warming the matcher up on
recent items) runs in a worker thread, never on the event loop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import bot.bootstrap as bootstrap
from bot.settings import EnvSettings, FileConfig, Settings
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher


async def test_matcher_is_built_and_warmed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = bootstrap.build_matcher

    def recording(settings: Settings) -> Matcher:
        threads.append(threading.current_thread().name)
        return real(settings)

    monkeypatch.setattr(bootstrap, "build_matcher", recording)
    env = EnvSettings.model_validate({"STORYWATCH_DATA_DIR": str(tmp_path)})
    settings = Settings(env=env, file=FileConfig())
    db = Database.open(settings.database_path)
    async with bootstrap.running_poller(settings, db):
        pass
    db.close()
    assert len(threads) == 1 and threads[0] != threading.main_thread().name
