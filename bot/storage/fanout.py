"""Outbox rows for one new match: the facts the planner needs, then its plan written.

Called inside the poll transaction (``Database.commit_poll``) with its
connection. The decisions (edit or send, folded, storm summary) are
``bot.planner``'s; this module only reads the facts and saves the actions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.planner import (
    FOLDED,
    MAX_EDITS_PER_ALERT,
    STORM_WINDOW,
    ChatFacts,
    CountIntoSummary,
    Queue,
    StartSummary,
    plan_fanout,
)
from bot.storage.engine import Conn, as_datetime

__all__ = ["FOLDED", "MAX_EDITS_PER_ALERT", "STORM_WINDOW", "fan_out"]


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def fan_out(
    c: Conn,
    storyline_id: int,
    item_id: int,
    dup_id: int | None,
    now: datetime,
    hourly_limit: int | None,
) -> int:
    """Write the outbox rows of one match; returns how many messages were queued."""
    chats = [
        int(r[0])
        for r in c.execute(
            "SELECT s.chat_id FROM subscriptions s JOIN chats ch ON ch.id = s.chat_id "
            "WHERE s.storyline_id = ? AND ch.active = 1 ORDER BY s.chat_id",
            (storyline_id,),
        ).fetchall()
    ]
    facts = [_facts(c, chat_id, storyline_id, dup_id, now, hourly_limit) for chat_id in chats]
    written = 0
    for action in plan_fanout(facts, now, hourly_limit):
        if isinstance(action, Queue):
            cur = c.execute(
                "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, parent_id, "
                "status, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (action.chat_id, storyline_id, item_id, action.kind, action.parent,
                 action.status, action.last_error, _ts(now)),
            )
            written += cur.rowcount if action.status == "pending" else 0
        elif isinstance(action, CountIntoSummary):
            c.execute(
                "UPDATE outbox SET summary_count = summary_count + 1, item_id = ? WHERE id = ?",
                (item_id, action.summary_id),
            )
        elif isinstance(action, StartSummary):
            c.execute(
                "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, "
                "summary_count, not_before, created_at) VALUES (?, ?, ?, 'send', 1, ?, ?)",
                (action.chat_id, storyline_id, item_id, _ts(action.due), _ts(now)),
            )
            written += 1
    return written


def _facts(
    c: Conn, chat_id: int, storyline_id: int, dup_id: int | None, now: datetime,
    hourly_limit: int | None,
) -> ChatFacts:
    parent = _parent(c, chat_id, storyline_id, dup_id)
    edits = waiting = 0
    if parent is not None:
        row = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) "
            "FROM outbox WHERE parent_id = ?", (parent,),
        ).fetchone()
        edits, waiting = int(row[0]), int(row[1])
    if hourly_limit is None:
        return ChatFacts(chat_id, parent, edits, waiting)
    # Alerts and "+N more" edits count; summaries and folded edits do not.
    row = c.execute(
        "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped'",
        (chat_id, storyline_id, _ts(now - STORM_WINDOW)),
    ).fetchone()
    summary = c.execute(
        "SELECT id FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND summary_count > 0 AND status = 'pending'",
        (chat_id, storyline_id),
    ).fetchone()
    return ChatFacts(
        chat_id, parent, edits, waiting, recent=int(row[0]),
        summary_id=None if summary is None else int(summary[0]),
        oldest_recent=as_datetime(row[1]),
    )


def _parent(c: Conn, chat_id: int, storyline_id: int, dup_id: int | None) -> int | None:
    """The chat's alert of the item this match repeats, if it has one."""
    if dup_id is None:
        return None
    row = c.execute(
        "SELECT id FROM outbox WHERE chat_id = ? AND storyline_id = ? AND item_id = ? "
        "AND kind = 'send' AND status IN ('pending', 'sending', 'sent')",
        (chat_id, storyline_id, dup_id),
    ).fetchone()
    return None if row is None else int(row[0])
