"""When a chat's alerts go out: instant, in digests at local times, or after quiet hours (pure).

A chat's :class:`Delivery` says its mode and its times; :func:`holds` decides,
when a match is written, whether its alert waits for a digest, and
:func:`next_slot` says when the digest holding an alert is due: the first
digest time strictly after the oldest alert it holds. Times are wall-clock
times in the chat's zone, turned into instants day by day with ``zoneinfo``,
so a digest at 08:00 stays at 08:00 local across daylight-saving changes (a
time that does not exist that day, 02:30 when clocks spring forward, falls an
hour later; a time that happens twice is taken the first time).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from bot.delivery.render import zone

MODES = ("instant", "digest", "quiet")
DEFAULT_TIMES: tuple[time, ...] = (time(8, 0), time(18, 0))
DEFAULT_QUIET: tuple[time, time] = (time(22, 0), time(7, 0))
MAX_TIMES = 6
_TIME_RE = re.compile(r"^([01]?\d|2[0-3])[:.h]([0-5]\d)$")


def parse_time(text: str) -> time:
    """``08:00`` (also ``8:00``, ``08.00``, ``08h00``) -> 08:00; ValueError with why."""
    m = _TIME_RE.match(text.strip().lower())
    if m is None:
        raise ValueError(f"“{text.strip()[:20]}” is not a time like 08:00 (24-hour clock)")
    return time(int(m.group(1)), int(m.group(2)))


def parse_times(text: str) -> tuple[time, ...]:
    """``08:00, 18:00`` -> the distinct times, sorted; ValueError with why."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise ValueError("give at least one time, e.g. 08:00, 18:00")
    times = sorted({parse_time(p) for p in parts})
    if len(times) > MAX_TIMES:
        raise ValueError(f"at most {MAX_TIMES} digest times a day")
    return tuple(times)


def parse_quiet(text: str) -> tuple[time, time]:
    """``22:00-07:00`` -> (22:00, 07:00); ValueError with why."""
    parts = [p for p in re.split(r"\s*[-–—]\s*|\s+to\s+", text.strip()) if p]
    if len(parts) != 2:
        raise ValueError("give quiet hours as START-END, e.g. 22:00-07:00")
    start, end = parse_time(parts[0]), parse_time(parts[1])
    if start == end:
        raise ValueError("quiet hours must start and end at different times")
    return start, end


def format_times(times: Sequence[time]) -> str:
    return ", ".join(f"{t:%H:%M}" for t in times)


def format_quiet(quiet: tuple[time, time]) -> str:
    return f"{quiet[0]:%H:%M}-{quiet[1]:%H:%M}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A chat's delivery settings as stored (``chats.delivery``, ``digest_times``,
    ``quiet_hours``, ``tz``); times left unset use the defaults."""

    mode: str = "instant"
    times: tuple[time, ...] = ()
    quiet: tuple[time, time] | None = None
    tz: str | None = None

    @classmethod
    def stored(
        cls, mode: str | None, times: str | None, quiet: str | None, tz: str | None
    ) -> Delivery:
        """From the database's columns; anything unreadable counts as unset."""
        try:
            parsed_times = parse_times(times) if times else ()
        except ValueError:
            parsed_times = ()
        try:
            parsed_quiet = parse_quiet(quiet) if quiet else None
        except ValueError:
            parsed_quiet = None
        return cls(mode if mode in MODES else "instant", parsed_times, parsed_quiet, tz)

    @property
    def digest_times(self) -> tuple[time, ...]:
        return self.times or DEFAULT_TIMES

    @property
    def quiet_hours(self) -> tuple[time, time]:
        return self.quiet or DEFAULT_QUIET

    @property
    def zone(self) -> tzinfo:
        return zone(self.tz)


def in_quiet_hours(quiet: tuple[time, time], local: time) -> bool:
    start, end = quiet
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight


def holds(d: Delivery, now: datetime, *, digest_only: bool = False) -> bool:
    """True if an alert written ``now`` waits for a digest instead of going out at once."""
    if digest_only or d.mode == "digest":
        return True
    if d.mode == "quiet":
        local = now.astimezone(d.zone).time().replace(tzinfo=None)
        return in_quiet_hours(d.quiet_hours, local)
    return False


def slot_times(d: Delivery) -> tuple[time, ...]:
    """The local times digests go out: the end of quiet hours in quiet mode, else the
    digest times (an instant chat's digest-only storylines use those too)."""
    if d.mode == "quiet":
        return (d.quiet_hours[1],)
    return d.digest_times


def next_slot(d: Delivery, after: datetime) -> datetime:
    """The first digest time strictly after ``after``, in UTC."""
    tz = d.zone
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    day = after.astimezone(tz).date()
    best: datetime | None = None
    for offset in range(-1, 3):
        for t in slot_times(d):
            at = datetime.combine(day + timedelta(days=offset), t, tzinfo=tz).astimezone(UTC)
            if at > after and (best is None or at < best):
                best = at
    assert best is not None  # a time of day recurs within two days
    return best


def describe(d: Delivery) -> str:
    """One line saying how alerts reach the chat."""
    if d.mode == "digest":
        return f"digest at {format_times(d.digest_times)}"
    if d.mode == "quiet":
        q = d.quiet_hours
        return (f"instant, but quiet {format_quiet(q)}: alerts wait and come as one digest "
                f"at {q[1]:%H:%M}")
    return "instant"
