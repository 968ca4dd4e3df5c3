"""Pure rate limiters: how long to wait before the next Telegram send or command.

Nothing here sleeps or reads the clock: every method takes ``now`` (seconds on
any monotonic scale) and answers with a delay, so the limits are tested exactly
and the sender decides how to wait.

Telegram's published limits are about 1 message per second per chat, 20 per
minute per group and 30 per second in all. A sliding window (remember the
times of the last N events) enforces "at most N in any window" exactly, which
a token bucket with a burst allowance would not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds."""

    __slots__ = ("_events", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a window needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()

    def delay(self, now: float) -> float:
        """Seconds until one more event is allowed (0.0 if allowed now)."""
        self._prune(now)
        if len(self._events) < self.limit:
            return 0.0
        return max(0.0, self._events[0] + self.window - now)

    def record(self, now: float) -> None:
        self._events.append(now)

    def idle(self, now: float) -> bool:
        """True if the window holds no event any more (safe to forget)."""
        self._prune(now)
        return not self._events


class KeyedWindows:
    """One :class:`SlidingWindow` per key, created on demand and forgotten when idle."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[int, SlidingWindow] = {}
        self._calls = 0

    def delay(self, key: int, now: float) -> float:
        w = self._windows.get(key)
        return 0.0 if w is None else w.delay(now)

    def record(self, key: int, now: float) -> None:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = SlidingWindow(self.limit, self.window)
        w.record(now)
        self._calls += 1
        # Forget idle keys now and then, so a bot with many chats does not grow forever.
        if self._calls % 1000 == 0:
            self._windows = {k: v for k, v in self._windows.items() if not v.idle(now)}

    def __len__(self) -> int:
        return len(self._windows)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """Telegram's limits (1/s per chat, 20/min per group, 30/s in all) with margins.

    Limits are granted here but counted by Telegram on arrival, and network
    jitter bunches sends up on the way: a burst of 30 granted at once lands as
    31 in some one-second window at the server. So the overall rate is paced
    (sends spaced at least ``overall_gap`` apart) a little under 30/s, and the
    per-chat and per-group windows are a little longer than Telegram's.
    """

    per_chat: int = 1
    per_chat_window: float = 1.1
    per_group: int = 20
    per_group_window: float = 61.0
    overall: int = 28
    overall_window: float = 1.0
    overall_gap: float = 1.0 / 28


def is_group(chat_id: int) -> bool:
    """Groups and channels have negative ids in the Bot API."""
    return chat_id < 0


class SendLimiter:
    """Decides when a message to a chat may go out under every limit at once.

    :meth:`reserve` either grants a send now (and counts it) or says how long
    to wait; it never counts a send it did not grant. :meth:`block` pauses a
    chat (or everything) after Telegram answered 429.
    """

    def __init__(self, limits: SendLimits | None = None) -> None:
        self.limits = limits or SendLimits()
        lim = self.limits
        self._chats = KeyedWindows(lim.per_chat, lim.per_chat_window)
        self._groups = KeyedWindows(lim.per_group, lim.per_group_window)
        self._overall = SlidingWindow(lim.overall, lim.overall_window)
        self._blocked: dict[int | None, float] = {}
        self._last_grant: float | None = None

    def delay(self, chat_id: int, now: float) -> float:
        """Seconds to wait before sending to ``chat_id`` (0.0: go now)."""
        waits = [
            self._overall.delay(now),
            self._chats.delay(chat_id, now),
            self._blocked.get(chat_id, now) - now,
            self._blocked.get(None, now) - now,
        ]
        if self._last_grant is not None:
            waits.append(self._last_grant + self.limits.overall_gap - now)
        if is_group(chat_id):
            waits.append(self._groups.delay(chat_id, now))
        return max(0.0, *waits)

    def reserve(self, chat_id: int, now: float) -> float:
        """Grant and count a send now (returns 0.0), or return the wait without counting."""
        wait = self.delay(chat_id, now)
        if wait > 0:
            return wait
        self._overall.record(now)
        self._last_grant = now
        self._chats.record(chat_id, now)
        if is_group(chat_id):
            self._groups.record(chat_id, now)
        self._blocked.pop(chat_id, None)
        return 0.0

    def block(self, chat_id: int | None, until: float) -> None:
        """Send nothing to ``chat_id`` (``None``: to anyone) before ``until``."""
        self._blocked[chat_id] = max(until, self._blocked.get(chat_id, until))


class CommandLimiter:
    """Per-chat command budget: ``per_minute`` commands in any 60 seconds.

    :meth:`check` answers "allow", "warn" (first refusal: tell the user once)
    or "drop" (later refusals in the same burst: stay quiet so a flood of
    commands does not turn into a flood of replies).
    """

    def __init__(self, per_minute: int) -> None:
        self._windows = KeyedWindows(per_minute, 60.0)
        self._warned: set[int] = set()

    def check(self, chat_id: int, now: float) -> str:
        if self._windows.delay(chat_id, now) == 0:
            self._windows.record(chat_id, now)
            self._warned.discard(chat_id)
            return "allow"
        if chat_id in self._warned:
            return "drop"
        self._warned.add(chat_id)
        return "warn"

    def retry_in(self, chat_id: int, now: float) -> float:
        return self._windows.delay(chat_id, now)
