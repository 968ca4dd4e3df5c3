"""Outbox rows for one new match: the facts the planner needs, then its plan written.

Called inside the poll transaction (``Database.commit_poll``) with its
connection. The decisions (edit or send, folded, storm summary) are
``bot.planner``'s; this module only reads the facts and saves the actions.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime

from bot.delivery.schedule import Delivery
from bot.planner import (
    FOLDED,
    MAX_EDITS_PER_ALERT,
    STORM_WINDOW,
    ChatFacts,
    CountIntoSummary,
    HoldForDigest,
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
    skip: Collection[int] = (),
) -> int:
    """Write the outbox rows of one match; returns how many messages were queued.

    Chats that muted the storyline get nothing, nor do the ``skip`` chats (their own
    👎 on a shared storyline ruled this item out for them): the planner says so."""
    chats = c.execute(
        "SELECT s.chat_id, s.digest_only, ch.delivery, ch.digest_times, ch.quiet_hours, ch.tz, "
        "s.muted_until FROM subscriptions s JOIN chats ch ON ch.id = s.chat_id "
        "WHERE s.storyline_id = ? AND ch.active = 1 ORDER BY s.chat_id",
        (storyline_id,),
    ).fetchall()
    facts = []
    for r in chats:
        chat_id, muted_until = int(r[0]), as_datetime(r[6])
        muted = muted_until is not None and muted_until > now
        if muted or chat_id in skip:
            # Nothing else about the chat matters: no queries for it.
            facts.append(ChatFacts(chat_id, muted=muted, excluded=chat_id in skip))
            continue
        facts.append(_facts(c, chat_id, storyline_id, dup_id, now, hourly_limit,
                            Delivery.stored(r[2], r[3], r[4], r[5]), bool(r[1])))
    written = 0
    for action in plan_fanout(facts, now, hourly_limit):
        if isinstance(action, HoldForDigest):
            cur = c.execute(
                "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, parent_id, "
                "status, held, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 1, ?)",
                (action.chat_id, storyline_id, item_id, action.kind, action.parent, _ts(now)),
            )
            written += cur.rowcount if action.parent is None else 0
        elif isinstance(action, Queue):
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
    hourly_limit: int | None, delivery: Delivery, digest_only: bool,
) -> ChatFacts:
    parent = _parent(c, chat_id, storyline_id, dup_id)
    edits = waiting = 0
    held = in_digest = False
    if parent is not None:
        row = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) "
            "FROM outbox WHERE parent_id = ?", (parent,),
        ).fetchone()
        edits, waiting = int(row[0]), int(row[1])
        row = c.execute("SELECT held, digest_id FROM outbox WHERE id = ?", (parent,)).fetchone()
        held, in_digest = bool(row[0]), row[1] is not None
    base = ChatFacts(chat_id, parent, edits, waiting, delivery=delivery,
                     digest_only=digest_only, parent_held=held, parent_in_digest=in_digest)
    if hourly_limit is None:
        return base
    # Alerts and "+N more" edits count; summaries, folded edits and alerts that went
    # into a digest (one message for them all) do not.
    row = c.execute(
        "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped' AND held = 0",
        (chat_id, storyline_id, _ts(now - STORM_WINDOW)),
    ).fetchone()
    summary = c.execute(
        "SELECT id FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND summary_count > 0 AND status = 'pending'",
        (chat_id, storyline_id),
    ).fetchone()
    return replace(
        base, recent=int(row[0]), summary_id=None if summary is None else int(summary[0]),
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
