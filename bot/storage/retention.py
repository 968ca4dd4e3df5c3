"""Retention: old rows pruned in small batches, and the space given back.

What goes, oldest first, each in batches of ``batch_rows`` rows per write
transaction so the bot's own writes (and another process) never wait long:

1. outbox rows sent, failed or dropped more than ``alerts_days`` ago (never a
   row whose edit is still pending);
2. matches older than ``alerts_days`` that no outbox row still refers to;
3. items not seen in their feed for ``items_days``, that are no longer in the
   feed's latest body, have no match left and no outbox row (an item still
   listed by its feed is kept however old, or it would come back as new);
4. ``meta`` notes about uncertain sends of rows that are no longer pending;
5. digests sent, failed or dropped more than ``alerts_days`` ago, and the notes
   about their uncertain parts;
6. feedback (👍 / 👎) no pass reads any more: on removed storylines, and beyond the
   newest ``FEEDBACK_KEPT`` of a storyline, chat scope and verdict (feedback on a
   storyline still tracked is kept however old: it is what taught it);
7. ``/track`` previews nobody decided on within ``PREVIEW_HOURS``.

Then ``PRAGMA incremental_vacuum`` returns the freed pages to the file system,
in steps, when the database was created with ``auto_vacuum=INCREMENTAL``
(every database Storywatch creates; an older file keeps its size and reuses the
space). Nothing here touches feeds, chats, storylines or subscriptions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.storage.repository import FEEDBACK_KEPT, FEEDBACK_RANK, Database

log = logging.getLogger(__name__)

# Pages freed per incremental_vacuum step (4 KiB pages: 4 MiB per write transaction).
VACUUM_STEP_PAGES = 1024

_OUTBOX = (
    "DELETE FROM outbox WHERE id IN (SELECT o.id FROM outbox o "
    "WHERE o.status IN ('sent', 'failed', 'dropped') AND o.created_at < :alerts "
    "AND NOT EXISTS (SELECT 1 FROM outbox c WHERE c.parent_id = o.id "
    "AND c.status IN ('pending', 'sending')) LIMIT :n)"
)
_MATCHES = (
    "DELETE FROM matches WHERE (item_id, storyline_id) IN "
    "(SELECT m.item_id, m.storyline_id FROM matches m "
    "WHERE m.created_at < :alerts AND NOT EXISTS (SELECT 1 FROM outbox o "
    "WHERE o.item_id = m.item_id AND o.storyline_id = m.storyline_id) LIMIT :n)"
)
_ITEMS = (
    "DELETE FROM items WHERE id IN (SELECT i.id FROM items i JOIN feeds f ON f.id = i.feed_id "
    "WHERE i.last_seen < :items AND i.last_seen < f.items_seen_at "
    "AND NOT EXISTS (SELECT 1 FROM matches m WHERE m.item_id = i.id) "
    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.item_id = i.id) LIMIT :n)"
)
_UNCERTAIN_NOTES = (
    "DELETE FROM meta WHERE key IN (SELECT key FROM meta WHERE key LIKE 'outbox.uncertain.%' "
    "AND CAST(substr(key, 18) AS INTEGER) NOT IN "
    "(SELECT id FROM outbox WHERE status IN ('pending', 'sending')) LIMIT :n)"
)
_DIGESTS = (
    "DELETE FROM digests WHERE id IN (SELECT id FROM digests "
    "WHERE status IN ('sent', 'failed', 'dropped') AND created_at < :alerts LIMIT :n)"
)
_DIGEST_NOTES = (  # digest.uncertain.<digest id>.<part>
    "DELETE FROM meta WHERE key IN (SELECT key FROM meta WHERE key LIKE 'digest.uncertain.%' "
    "AND CAST(substr(key, 18, instr(substr(key, 18), '.') - 1) AS INTEGER) NOT IN "
    "(SELECT id FROM digests WHERE status IN ('pending', 'sending')) LIMIT :n)"
)
_FEEDBACK_REMOVED = (
    "DELETE FROM feedback WHERE id IN (SELECT f.id FROM feedback f JOIN storylines s "
    "ON s.id = f.storyline_id WHERE s.active = 0 LIMIT :n)"
)
_FEEDBACK_UNREAD = (  # two constants of ours: nothing from outside is formatted in
    f"DELETE FROM feedback WHERE id IN (SELECT id FROM (SELECT f.id, {FEEDBACK_RANK} "  # noqa: S608
    f"AS rank FROM feedback f) AS ranked WHERE rank > {FEEDBACK_KEPT} LIMIT :n)"
)
_PREVIEWS = (
    "DELETE FROM pending_tracks WHERE id IN (SELECT id FROM pending_tracks "
    "WHERE created_at < :previews LIMIT :n)"
)
STEPS = (("outbox", _OUTBOX), ("matches", _MATCHES), ("items", _ITEMS),
         ("meta", _UNCERTAIN_NOTES), ("digests", _DIGESTS), ("meta", _DIGEST_NOTES),
         ("feedback", _FEEDBACK_REMOVED), ("feedback", _FEEDBACK_UNREAD),
         ("pending_tracks", _PREVIEWS))
PREVIEW_HOURS = 24.0  # a /track preview's buttons work this long


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long rows are kept (the ``[retention]`` settings)."""

    items_days: float = 14.0
    alerts_days: float = 180.0
    batch_rows: int = 500


@dataclass(slots=True)
class PruneReport:
    """What one pruning run did; ``longest_hold`` is the longest single write
    transaction (the longest the write lock was held), in seconds."""

    deleted: dict[str, int] = field(default_factory=dict)
    pages_freed: int = 0
    transactions: int = 0
    longest_hold: float = 0.0
    longest_step: str = ""

    def describe(self) -> str:
        rows = ", ".join(f"{n} {table}" for table, n in self.deleted.items() if n) or "nothing"
        return (
            f"pruned {rows}; {self.pages_freed} pages given back; "
            f"{self.transactions} transactions, longest {self.longest_hold * 1000:.0f} ms"
        )


def prune(db: Database, now: datetime, policy: RetentionPolicy) -> PruneReport:
    """Delete what the policy no longer keeps, batch by batch; blocking (run it in
    a thread). Each batch is its own transaction, so a crash loses nothing."""
    report = PruneReport()
    params = {
        "alerts": (now - timedelta(days=policy.alerts_days)).isoformat(),
        "items": (now - timedelta(days=policy.items_days)).isoformat(),
        "previews": (now - timedelta(hours=PREVIEW_HOURS)).isoformat(),
        "n": policy.batch_rows,
    }
    for table, sql in STEPS:
        total = 0
        while True:
            started = time.monotonic()
            with db.transaction() as c:
                deleted = c.execute(sql, params).rowcount
            _held(report, started, table)
            total += deleted
            if deleted < policy.batch_rows:
                break
        report.deleted[table] = report.deleted.get(table, 0) + total
    _give_back(db, report)
    return report


def _held(report: PruneReport, started: float, step: str) -> None:
    report.transactions += 1
    held = time.monotonic() - started
    if held > report.longest_hold:
        report.longest_hold, report.longest_step = held, step


def _give_back(db: Database, report: PruneReport) -> None:
    # PostgreSQL's autovacuum gives space back by itself.
    if db.engine != "sqlite" or db.pragma_int("auto_vacuum") != 2:  # 2 = incremental
        return
    while True:
        free = db.pragma_int("freelist_count")
        if free == 0:
            return
        started = time.monotonic()
        with db.transaction() as c:
            # Each step of the pragma frees pages; fetchall runs them all.
            c.execute(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})").fetchall()
        _held(report, started, "vacuum")
        report.pages_freed += min(free, VACUUM_STEP_PAGES)
