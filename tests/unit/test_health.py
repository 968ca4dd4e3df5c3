"""The health verdict: the pure rule, the read-only database read, and ``storywatch health``."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.health import (
    HealthVerdict,
    assess_health,
    check_database,
    poll_max_age,
    read_health_meta,
)
from bot.storage.repository import Database

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


def test_fresh_heartbeats_are_healthy() -> None:
    verdict = assess_health({"last_poll": ago(10), "telegram_ok": ago(5)}, NOW, 300)
    assert verdict == HealthVerdict(ok=True, reasons=[])
    assert verdict.describe() == "healthy"


def test_poll_window_is_three_intervals_with_a_two_minute_floor() -> None:
    assert poll_max_age(300) == 900
    assert poll_max_age(10) == 120
    ok = {"telegram_ok": ago(1)}
    assert assess_health({**ok, "last_poll": ago(899)}, NOW, 300).ok
    assert not assess_health({**ok, "last_poll": ago(901)}, NOW, 300).ok
    assert assess_health({**ok, "last_poll": ago(119)}, NOW, 10).ok
    assert not assess_health({**ok, "last_poll": ago(121)}, NOW, 10).ok


def test_stale_poll_reason_names_the_age_and_the_last_time() -> None:
    verdict = assess_health({"last_poll": ago(1520), "telegram_ok": ago(1)}, NOW, 300)
    assert not verdict.ok
    assert verdict.reasons == ["no poll pass for 1,520 s (last 2026-03-01T11:34:40+00:00)"]
    assert verdict.describe().startswith("unhealthy: no poll pass for 1,520 s")


def test_telegram_window_is_five_minutes() -> None:
    base = {"last_poll": ago(1)}
    assert assess_health({**base, "telegram_ok": ago(299)}, NOW, 300).ok
    verdict = assess_health({**base, "telegram_ok": ago(301)}, NOW, 300)
    assert verdict.reasons == [
        "no successful Telegram call for 301 s (last 2026-03-01T11:54:59+00:00)"
    ]


def test_missing_and_unreadable_heartbeats_each_give_a_reason() -> None:
    verdict = assess_health({"last_poll": None}, NOW, 300)
    assert verdict.reasons == ["no poll pass yet", "no successful Telegram call yet"]
    verdict = assess_health({"last_poll": "yesterday", "telegram_ok": ""}, NOW, 300)
    assert verdict.reasons == [
        "cannot read the time of the last poll pass ('yesterday')",
        "no successful Telegram call yet",
    ]
    assert verdict.describe() == "unhealthy: " + "; ".join(verdict.reasons)


def test_naive_timestamps_count_as_utc_and_the_future_counts_as_fresh() -> None:
    naive = (NOW - timedelta(seconds=30)).replace(tzinfo=None).isoformat()
    future = (NOW + timedelta(seconds=30)).isoformat()
    assert assess_health({"last_poll": naive, "telegram_ok": future}, NOW, 300).ok


def test_other_time_zones_are_compared_as_instants() -> None:
    moscow = (NOW - timedelta(seconds=60)).astimezone(
        datetime.now().astimezone().tzinfo
    ).isoformat()
    assert assess_health({"last_poll": moscow, "telegram_ok": ago(0)}, NOW, 300).ok


def test_no_database_means_not_started(tmp_path: Path) -> None:
    path = tmp_path / "storywatch.db"
    assert read_health_meta(path) is None
    verdict = check_database(path, 300, NOW)
    assert verdict.reasons == [f"not started yet (no database at {path})"]
    assert not path.exists()  # the check never creates it


def test_database_heartbeats_are_read_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "storywatch.db"
    db = Database.open(path)
    try:
        assert check_database(path, 300, NOW).reasons == [
            "no poll pass yet",
            "no successful Telegram call yet",
        ]
        db.set_meta("last_poll", ago(20))
        db.set_meta("telegram_ok", ago(3))
        db.set_meta("unrelated", "x")
        assert read_health_meta(path) == {
        "last_poll": ago(20), "telegram_ok": ago(3), "internal_errors.last_poll": None
    }
        assert check_database(path, 300, NOW).ok
    finally:
        db.close()


def test_unmigrated_database_is_still_starting(tmp_path: Path) -> None:
    path = tmp_path / "storywatch.db"
    sqlite3.connect(path).close()
    assert check_database(path, 300, NOW).reasons == [
        "no poll pass yet",
        "no successful Telegram call yet",
    ]


def test_unreadable_database_is_unhealthy_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "storywatch.db"
    path.write_bytes(b"this is not a database" * 100)
    verdict = check_database(path, 300, NOW)
    assert not verdict.ok
    assert verdict.reasons[0].startswith(f"database {path} is corrupt (file is not a database)")


def _health_cli() -> Any:
    # bot.cli imports every subcommand module; while one of them is still being
    # written the package does not import, and only these CLI tests wait for it.
    return pytest.importorskip(
        "bot.cli.health", reason="bot.cli does not import yet", exc_type=ImportError
    )


def _run_health_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    health = _health_cli()
    config = tmp_path / "storywatch.toml"
    config.write_text("")
    monkeypatch.setenv("STORYWATCH_CONFIG", str(config))
    monkeypatch.setenv("STORYWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STORYWATCH_POLL_INTERVAL", "60")
    parser = argparse.ArgumentParser()
    health.register(parser.add_subparsers())
    args = parser.parse_args(["health"])
    code: int = args.func(args)
    return code


def test_cli_exits_1_before_start_and_0_when_fresh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_health_cli(monkeypatch, tmp_path) == 1
    assert "unhealthy: not started yet" in capsys.readouterr().out
    db = Database.open(tmp_path / "data" / "storywatch.db")
    now = datetime.now(UTC).isoformat()
    db.set_meta("last_poll", now)
    db.set_meta("telegram_ok", now)
    db.close()
    assert _run_health_cli(monkeypatch, tmp_path) == 0
    assert capsys.readouterr().out.strip() == "healthy"


def test_cli_broken_setup_exits_1_not_docker_reserved_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    health = _health_cli()
    monkeypatch.setenv("STORYWATCH_CONFIG", str(tmp_path / "missing.toml"))
    parser = argparse.ArgumentParser()
    health.register(parser.add_subparsers())
    args = parser.parse_args(["health"])
    assert args.func(args) == 1
    assert "unhealthy: config file" in capsys.readouterr().out
