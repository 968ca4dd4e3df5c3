"""Outbox rows for one new match: one per subscribed chat, within the storm bounds.

Called inside the poll transaction (``Database.commit_poll``) with its
connection. The rules, per chat:

- a match that repeats an alert the chat has (``dup_id``) becomes an "edit"
  row ("+N more" on that message); at most ``MAX_EDITS_PER_ALERT`` per alert,
  and while one edit is pending the next ones are folded into it (written as
  'dropped', listed by the pending edit when it redraws the message);
- past ``hourly_limit`` messages about the storyline in the last hour (alerts
  and edits), the match is counted into the chat's one pending summary of the
  storyline, which goes out when the hour's first message is an hour old.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

# Alerts per chat and storyline are limited over this window (a storm).
STORM_WINDOW = timedelta(hours=1)

# Reports folded into one alert as "+N more" edits, at most.
MAX_EDITS_PER_ALERT = 20

FOLDED = "shown by the pending edit"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def fan_out(
    c: sqlite3.Connection,
    storyline_id: int,
    item_id: int,
    dup_id: int | None,
    now: datetime,
    hourly_limit: int | None,
    skip: Collection[int] = (),
) -> int:
    """Write the outbox rows of one match; returns how many messages were queued.

    Chats that muted the storyline get nothing, nor do the ``skip`` chats (their own
    👎 on a shared storyline ruled this item out for them)."""
    chats = [
        int(r[0])
        for r in c.execute(
            "SELECT s.chat_id FROM subscriptions s JOIN chats ch ON ch.id = s.chat_id "
            "WHERE s.storyline_id = ? AND ch.active = 1 "
            "AND (s.muted_until IS NULL OR s.muted_until <= ?)",
            (storyline_id, _ts(now)),
        )
        if int(r[0]) not in skip
    ]
    written = 0
    for chat_id in chats:
        parent = _parent(c, chat_id, storyline_id, dup_id)
        status = "pending"
        if parent is not None:
            edits, waiting = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(status = 'pending'), 0) FROM outbox "
                "WHERE parent_id = ?", (parent,),
            ).fetchone()
            if edits >= MAX_EDITS_PER_ALERT:
                continue  # the message already says "+N more"; a storm must not grow it
            if waiting:
                status = "dropped"
        if status == "pending" and hourly_limit is not None and _storming(
            c, chat_id, storyline_id, now, hourly_limit
        ):
            written += _hold(c, chat_id, storyline_id, item_id, now)
            continue
        cur = c.execute(
            "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, parent_id, "
            "status, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chat_id, storyline_id, item_id, "send" if parent is None else "edit", parent,
             status, None if status == "pending" else FOLDED, _ts(now)),
        )
        written += cur.rowcount if status == "pending" else 0
    return written


def _parent(
    c: sqlite3.Connection, chat_id: int, storyline_id: int, dup_id: int | None
) -> int | None:
    """The chat's alert of the item this match repeats, if it has one."""
    if dup_id is None:
        return None
    row = c.execute(
        "SELECT id FROM outbox WHERE chat_id = ? AND storyline_id = ? AND item_id = ? "
        "AND kind = 'send' AND status IN ('pending', 'sending', 'sent')",
        (chat_id, storyline_id, dup_id),
    ).fetchone()
    return None if row is None else int(row[0])


def _storming(
    c: sqlite3.Connection, chat_id: int, storyline_id: int, now: datetime, limit: int
) -> bool:
    """True when the chat already got ``limit`` messages about this storyline in the
    last hour: alerts and "+N more" edits (summaries and folded edits not counted)."""
    sent = c.execute(
        "SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped'",
        (chat_id, storyline_id, _ts(now - STORM_WINDOW)),
    ).fetchone()[0]
    return int(sent) >= limit


def _hold(
    c: sqlite3.Connection, chat_id: int, storyline_id: int, item_id: int, now: datetime
) -> int:
    """Count a match past the hourly limit into the chat's pending summary of the
    storyline, or start one; returns the messages queued (0 or 1)."""
    row = c.execute(
        "SELECT id FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND summary_count > 0 AND status = 'pending'",
        (chat_id, storyline_id),
    ).fetchone()
    if row is not None:
        c.execute(
            "UPDATE outbox SET summary_count = summary_count + 1, item_id = ? WHERE id = ?",
            (item_id, row[0]),
        )
        return 0
    oldest = c.execute(
        "SELECT MIN(created_at) FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped'",
        (chat_id, storyline_id, _ts(now - STORM_WINDOW)),
    ).fetchone()[0]
    # One summary with the storm's final count, once alerts may flow again.
    due = (datetime.fromisoformat(oldest) if oldest else now) + STORM_WINDOW
    c.execute(
        "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, summary_count, "
        "not_before, created_at) VALUES (?, ?, ?, 'send', 1, ?, ?)",
        (chat_id, storyline_id, item_id, _ts(due), _ts(now)),
    )
    return 1
