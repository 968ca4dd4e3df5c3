"""Delivery schedules: parsing times, quiet hours, and digest times across daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from bot.delivery.schedule import (
    Delivery,
    describe,
    holds,
    next_slot,
    parse_quiet,
    parse_times,
)
from bot.telegram.commands import RawCommand, Setting, UsageError, parse


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_times_are_parsed_sorted_and_checked() -> None:
    assert parse_times("18:00, 08:00") == (time(8), time(18))
    assert parse_times("8:30 18.00 08:30") == (time(8, 30), time(18))
    assert parse_quiet("22:00-07:00") == (time(22), time(7))
    assert parse_quiet("23:30 – 6:15") == (time(23, 30), time(6, 15))
    for bad in ("", "25:00", "8", "08:60", "noon", "1,2,3,4,5,6,7".replace(",", ":00,") + ":00"):
        with pytest.raises(ValueError):
            parse_times(bad)
    for bad in ("22:00", "22:00-22:00", "22:00-07:00-08:00", "late-early"):
        with pytest.raises(ValueError):
            parse_quiet(bad)


def test_settings_commands_parse_to_settings() -> None:
    def p(text: str) -> Any:
        name, _, args = text.removeprefix("/").partition(" ")
        return parse(RawCommand(name, args, None))

    assert p("/settings digest 18:00,8:00").value == Setting("digest", "08:00, 18:00")
    assert p("/settings digest").value == Setting("digest", "")
    assert p("/settings quiet 22:00-7:00").value == Setting("quiet", "22:00-07:00")
    assert p("/settings instant").value == Setting("instant")
    assert p("/settings digestonly #3 ON").value == Setting("digestonly", "3 on")
    for bad, why in (("/settings digest 8 pm", "not a time"),
                     ("/settings quiet 22:00", "START-END"),
                     ("/settings digestonly 3", "on or off"),
                     ("/settings digestonly x on", "not a storyline id"),
                     ("/settings instant now", "takes nothing"),
                     ("/settings loud", "I know these settings")):
        with pytest.raises(UsageError, match=why):
            p(bad)


def test_what_is_held() -> None:
    quiet = Delivery("quiet", quiet=(time(22), time(7)), tz="Europe/Paris")
    assert holds(quiet, utc(2026, 12, 2, 21, 30))  # 22:30 in Paris
    assert holds(quiet, utc(2026, 12, 3, 5, 59))  # 06:59
    assert not holds(quiet, utc(2026, 12, 3, 6, 0))  # 07:00: over
    assert not holds(quiet, utc(2026, 12, 2, 20, 59))  # 21:59
    day = Delivery("quiet", quiet=(time(12), time(14)))
    assert holds(day, utc(2026, 1, 1, 13)) and not holds(day, utc(2026, 1, 1, 14))
    assert holds(Delivery("digest"), utc(2026, 1, 1, 13))
    assert not holds(Delivery(), utc(2026, 1, 1, 13))
    assert holds(Delivery(), utc(2026, 1, 1, 13), digest_only=True)


def test_next_slot_is_the_first_time_strictly_after() -> None:
    d = Delivery("digest", times=(time(8), time(18)), tz="Europe/Paris")
    assert next_slot(d, utc(2026, 12, 2, 6, 59)) == utc(2026, 12, 2, 7)  # 08:00 CET
    assert next_slot(d, utc(2026, 12, 2, 7)) == utc(2026, 12, 2, 17)  # not the same instant
    assert next_slot(d, utc(2026, 12, 2, 23)) == utc(2026, 12, 3, 7)  # tomorrow
    quiet = Delivery("quiet", quiet=(time(22), time(7)), tz="Asia/Tokyo")
    assert next_slot(quiet, utc(2026, 12, 2, 14)) == utc(2026, 12, 2, 22)  # 07:00 JST
    assert describe(quiet).startswith("instant, but quiet 22:00-07:00")
    assert describe(Delivery()) == "instant"  # instant chats: digest-only storylines at 08:00
    assert next_slot(Delivery(), utc(2026, 1, 1, 7, 30)) == utc(2026, 1, 1, 8)


def test_digest_times_follow_daylight_saving_in_the_chats_zone() -> None:
    paris = Delivery("digest", times=(time(8),), tz="Europe/Paris")
    # Clocks go forward on 29 March 2026 (CET +1 -> CEST +2): 08:00 local moves
    # from 07:00 UTC to 06:00 UTC, and back on 25 October.
    assert next_slot(paris, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 6)
    assert next_slot(paris, utc(2026, 3, 27, 12)) == utc(2026, 3, 28, 7)
    assert next_slot(paris, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 7)
    assert next_slot(paris, utc(2026, 10, 23, 12)) == utc(2026, 10, 24, 6)
    # 02:30 does not exist on 29 March: it falls an hour later (03:30 CEST = 01:30 UTC),
    # once; 02:30 happens twice on 25 October: the first time (CEST) only.
    night = Delivery("digest", times=(time(2, 30),), tz="Europe/Paris")
    assert next_slot(night, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)
    assert next_slot(night, utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)
    assert next_slot(night, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert next_slot(night, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)
    # Quiet hours end at 07:00 local on both sides of New York's change (8 March 2026).
    ny = Delivery("quiet", quiet=(time(22), time(7)), tz="America/New_York")
    assert next_slot(ny, utc(2026, 3, 7, 20)) == utc(2026, 3, 8, 11)  # EDT, -4
    assert next_slot(ny, utc(2026, 3, 6, 20)) == utc(2026, 3, 7, 12)  # EST, -5
    assert holds(ny, utc(2026, 3, 8, 10, 59)) and not holds(ny, utc(2026, 3, 8, 11))


def test_unreadable_stored_values_fall_back_to_defaults() -> None:
    d = Delivery.stored("weird", "not times", "nor-this", None)
    assert d.mode == "instant" and d.digest_times == (time(8), time(18))
    assert d.quiet_hours == (time(22), time(7))
