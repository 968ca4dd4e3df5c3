"""Delivery benchmark: the real outbox sender against a fake Bot API, within Telegram's limits.

Two scenarios, each on a fresh SQLite database whose outbox rows are written the way a
poll writes them (``Database.commit_poll`` on a primed feed, fanned out to the
subscribed chats), drained by the real :class:`bot.delivery.sender.Sender` through
python-telegram-bot's ``Bot`` pointed at :class:`tests.support.fake_telegram.FakeTelegram`
on 127.0.0.1:

* **fan-out** - one alert to 1,000 private chats: how close to 30 messages/s overall;
* **group** - 100 alerts to one group: 20 per minute per group and 1 per second per
  chat. Draining 100 takes about 5 minutes at that limit, so the run is bounded to
  ``--group-seconds`` (default 70 s: two windows of the per-group limit) and reports
  what went out in that time.

The fake runs in its own process (as Telegram is not inside the bot's process: an
in-process fake shares the GIL and skews the arrival times it records). It does not
enforce the limits, so this bench checks them from its recorded arrival times
(``Sent.at``, server side, as Telegram would count):
a *violation* is a message that arrives when its window (1 s overall, 1 s per chat,
60 s per group) already holds the limit. Medians of ``--runs`` runs (default 3).

Run: .venv/bin/python bench/bench_deliver.py       (about 5 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, med, table
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.support.fake_telegram import FakeTelegram

TOKEN = "123:BENCH"
OVERALL, OVERALL_WINDOW = 30, 1.0
PER_CHAT, PER_CHAT_WINDOW = 1, 1.0
PER_GROUP, PER_GROUP_WINDOW = 20, 60.0
TARGET_SHARE = 0.90  # of 30 msg/s overall
GROUP_ID = -1001234567


def violations(times: Sequence[float], limit: int, window: float) -> int:
    """Events that arrived while ``window`` seconds before them already held ``limit``."""
    ordered = sorted(times)
    bad = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        if hi - lo + 1 > limit:
            bad += 1
    return bad


def max_in_window(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass(frozen=True, slots=True)
class Check:
    """What Telegram's limits say about a list of arrivals."""

    sent: int
    span: float
    rate: float
    max_per_second: int
    max_group_per_minute: int
    over_overall: int
    over_chat: int
    over_group: int

    @classmethod
    def of(cls, sent: Sequence[tuple[int, float]]) -> Check:
        times = [at for _, at in sent]
        span = max(times) - min(times) if len(times) > 1 else 0.0
        by_chat: dict[int, list[float]] = defaultdict(list)
        for chat, at in sent:
            by_chat[chat].append(at)
        groups = {c: ts for c, ts in by_chat.items() if c < 0}
        return cls(
            sent=len(sent),
            span=span,
            rate=(len(times) - 1) / span if span > 0 else 0.0,
            max_per_second=max_in_window(times, OVERALL_WINDOW) if times else 0,
            max_group_per_minute=max(
                (max_in_window(ts, PER_GROUP_WINDOW) for ts in groups.values()), default=0),
            over_overall=violations(times, OVERALL, OVERALL_WINDOW),
            over_chat=sum(violations(ts, PER_CHAT, PER_CHAT_WINDOW) for ts in by_chat.values()),
            over_group=sum(violations(ts, PER_GROUP, PER_GROUP_WINDOW) for ts in groups.values()),
        )

    @property
    def violations(self) -> int:
        return self.over_overall + self.over_chat + self.over_group


class RemoteFake:
    """FakeTelegram in its own process (spawn), so its HTTP threads neither share the
    sender's GIL nor delay the arrival times it records; the bench reads those back."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_fake_process, args=(child,), daemon=True)
        self.api_url = ""

    def __enter__(self) -> RemoteFake:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("the fake Bot API did not start")
        self.api_url = str(self._conn.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(("stop",))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()

    def sent(self) -> list[tuple[int, float]]:
        """(chat id, arrival time) of every message the fake accepted so far."""
        self._conn.send(("sent",))
        return [(int(c), float(t)) for c, t in self._conn.recv()]

    def refused(self) -> int:
        self._conn.send(("refused",))
        return int(self._conn.recv())


def _fake_process(conn: Connection) -> None:
    with FakeTelegram(TOKEN) as fake:
        conn.send(fake.api_url)
        while True:
            cmd = conn.recv()[0]
            if cmd == "sent":
                conn.send([(m.chat_id, m.at) for m in fake.all_messages()])
            elif cmd == "refused":
                conn.send(len(fake.refused))
            else:
                return


class PacedLimiter:
    """The proposed fix, tried from the bench: :class:`SendLimiter` plus an even pace.

    The sliding windows are exact at the sender, but a window's 30 grants go out as one
    burst and reach the server with some scatter, so a 1 s window there can hold more
    than 30. Spacing grants at least ``1 / rate`` s apart (``rate`` a little under 30)
    leaves room for that scatter.
    """

    def __init__(self, rate: float) -> None:
        from bot.delivery.ratelimit import SendLimiter

        self._inner = SendLimiter()
        self._gap = 1.0 / rate
        self._next = 0.0

    def delay(self, chat_id: int, now: float) -> float:
        return max(self._inner.delay(chat_id, now), self._next - now)

    def reserve(self, chat_id: int, now: float) -> float:
        wait = max(0.0, self._next - now)
        if wait > 0:
            return wait
        wait = self._inner.reserve(chat_id, now)
        if wait == 0:
            self._next = now + self._gap
        return wait

    def block(self, chat_id: int | None, until: float) -> None:
        self._inner.block(chat_id, until)


def populate(db: Database, chats: Sequence[int], alerts: int) -> int:
    """A primed feed, one storyline followed by ``chats``, ``alerts`` matched new items.

    Returns the number of outbox rows the poll transaction wrote.
    """
    now = datetime.now(UTC)
    feed = db.add_feed("https://news.example.test/bench.xml", now=now, title="Bench News")
    story = db.add_storyline(Storyline(0, "Wang Yi visit to Moscow"), now=now)
    db.commit_poll(feed.id, FeedState(), now=now, title="Bench News", items=[], matches=[])
    for chat in chats:
        db.upsert_chat(chat, now=now, type_="group" if chat < 0 else "private")
        db.subscribe(chat, story.id, now=now)
    items = [
        Item(key=f"bench-{k}", title=f"Wang Yi meets officials in Moscow, day {k} of the visit",
             summary="Talks on energy and grain exports continued on Thursday.",
             link=f"https://news.example.test/story/{k}", published=now, source="Bench News")
        for k in range(alerts)
    ]
    matches = [MatchToStore(Match(i.key, story.id, 0.8, "title: Wang Yi, Moscow, visit"))
               for i in items]
    commit = db.commit_poll(feed.id, FeedState(), now=now, title="Bench News", items=items,
                            matches=matches)
    return commit.alerts


async def drain(fake: RemoteFake, chats: Sequence[int], alerts: int,
                limit_seconds: float, pace: float = 0.0) -> dict[str, Any]:
    """Fill an outbox, run the real Sender until it is empty or time is up; check arrivals."""
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.delivery.sender import Sender

    with tempfile.TemporaryDirectory(prefix="sw-bench-deliver-") as tmp:
        db = Database.open(Path(tmp) / "storywatch.db")
        rows = populate(db, chats, alerts)
        before = len(fake.sent())
        bot = Bot(TOKEN, base_url=fake.api_url,
                  request=HTTPXRequest(connection_pool_size=64, read_timeout=15.0,
                                       write_timeout=15.0))
        async with bot:
            limiter: Any = PacedLimiter(pace) if pace else None
            sender = Sender(db, bot, limiter=limiter)
            t0 = time.monotonic()
            sender.start()
            deadline = t0 + limit_seconds
            while time.monotonic() < deadline:
                counts = await asyncio.to_thread(db.outbox_counts)
                if counts["pending"] == 0 and counts["sending"] == 0:
                    break
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - t0
            await sender.stop()
        counts = db.outbox_counts()
        db.close()
    sent = fake.sent()[before:]
    check = Check.of(sent)
    return {
        "rows": rows, "elapsed": elapsed, "counts": counts, "sent": check.sent,
        "span": check.span, "rate": check.rate, "max_per_second": check.max_per_second,
        "max_group_per_minute": check.max_group_per_minute, "violations": check.violations,
        "over_overall": check.over_overall, "over_chat": check.over_chat,
        "over_group": check.over_group, "refused": fake.refused(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description="delivery benchmark")
    p.add_argument("--chats", type=int, default=1000)
    p.add_argument("--group-alerts", type=int, default=100)
    p.add_argument("--group-seconds", type=float, default=70.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pace", type=float, default=0.0,
                   help="try the proposed even pacing at this many msg/s (0: the real limiter)")
    args = p.parse_args()
    print(machine())
    print("limiter: " + (f"proposed pacing at {args.pace:g} msg/s" if args.pace
                         else "bot.delivery.ratelimit.SendLimiter (as shipped)"))
    fan: list[dict[str, Any]] = []
    grp: list[dict[str, Any]] = []
    with RemoteFake() as fake:
        for r in range(args.runs):
            chats = [10_000_000 * (r + 1) + i for i in range(args.chats)]
            res = asyncio.run(drain(fake, chats, 1, limit_seconds=args.chats / 25 + 60,
                                   pace=args.pace))
            fan.append(res)
            print(f"  run {r + 1} fan-out: {res['sent']} sent in {res['span']:.1f}s = "
                  f"{res['rate']:.2f} msg/s, max {res['max_per_second']} in 1 s, "
                  f"violations {res['violations']}, outbox {res['counts']}", flush=True)
            res = asyncio.run(drain(fake, [GROUP_ID - r], args.group_alerts,
                                    limit_seconds=args.group_seconds, pace=args.pace))
            grp.append(res)
            print(f"  run {r + 1} group: {res['sent']} of {res['rows']} sent in "
                  f"{res['elapsed']:.0f}s, max {res['max_group_per_minute']} in 60 s, "
                  f"violations {res['violations']}, outbox {res['counts']}", flush=True)
    print()
    rows = [
        ["one alert -> 1,000 chats", f"{med(fan, 'sent'):.0f} / {args.chats}",
         med(fan, "span"), f"{med(fan, 'rate'):.2f} msg/s",
         f"{med(fan, 'rate') / OVERALL:.0%} of 30/s", f"{med(fan, 'max_per_second'):.0f} (30)",
         int(med(fan, "violations"))],
        [f"{args.group_alerts} alerts -> 1 group ({args.group_seconds:.0f} s)",
         f"{med(grp, 'sent'):.0f} / {args.group_alerts}", med(grp, "span"),
         f"{med(grp, 'max_group_per_minute'):.0f} per 60 s",
         f"{med(grp, 'max_group_per_minute') / PER_GROUP:.0%} of 20/min",
         f"{med(grp, 'max_per_second'):.0f} (1)", int(med(grp, "violations"))],
    ]
    print(table(["scenario", "sent", "first-to-last s", "rate reached", "against the limit",
                 "max in any 1 s (limit)", "limit violations"], rows))
    share = med(fan, "rate") / OVERALL
    worst = max(r["violations"] for r in fan + grp)
    print()
    print(table(["target", "goal", "measured", ""], [
        ["overall rate, fan-out", f">= {TARGET_SHARE:.0%} of 30 msg/s", f"{share:.0%}",
         "met" if share >= TARGET_SHARE else "MISSED"],
        ["limit violations (worst run)", "0", str(worst), "met" if worst == 0 else "MISSED"],
    ]))


if __name__ == "__main__":
    main()
