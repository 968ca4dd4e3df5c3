"""Outbox rows for one new match: one per subscribed chat, within the storm bounds.

Called inside the poll transaction (``Database.commit_poll``) with its
connection. The rules, per chat:

- a match that repeats an alert the chat has (``dup_id``) becomes an "edit"
  row ("+N more" on that message); at most ``MAX_EDITS_PER_ALERT`` per alert,
  and while one edit is pending the next ones are folded into it (written as
  'dropped', listed by the pending edit when it redraws the message);
- past ``hourly_limit`` messages about the storyline in the last hour (alerts
  and edits), the match is counted into the chat's one pending summary of the
  storyline, which goes out when the hour's first message is an hour old;
- a chat in digest mode or in its quiet hours, or a digest-only storyline, gets
  a held row instead (``held = 1``): the sender never claims it, and the next
  digest of the chat gathers it (``storage.digests``). The storm bound does not
  apply to held rows: a digest is already one message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from bot.delivery.schedule import Delivery, holds

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
        r for r in c.execute(
            "SELECT s.chat_id, s.digest_only, ch.delivery, ch.digest_times, ch.quiet_hours, "
            "ch.tz FROM subscriptions s JOIN chats ch ON ch.id = s.chat_id "
            "WHERE s.storyline_id = ? AND ch.active = 1 "
            "AND (s.muted_until IS NULL OR s.muted_until <= ?)",
            (storyline_id, _ts(now)),
        ).fetchall()
        if int(r[0]) not in skip
    ]
    written = 0
    for chat_id, digest_only, mode, times, quiet, tz in chats:
        parent = _parent(c, chat_id, storyline_id, dup_id)
        wants_digest = holds(
            Delivery.stored(mode, times, quiet, tz), now, digest_only=bool(digest_only)
        )
        if wants_digest or parent is not None:
            held = _hold_for_digest(c, chat_id, storyline_id, item_id, parent, now,
                                    wants_digest=wants_digest)
            if held is not None:
                written += held
                continue
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


def _hold_for_digest(
    c: sqlite3.Connection, chat_id: int, storyline_id: int, item_id: int,
    parent: int | None, now: datetime, *, wants_digest: bool,
) -> int | None:
    """Write the match as waiting for the chat's next digest; returns the messages
    queued (0 or 1), or None when it goes the usual way: a new development for a
    chat taking alerts now, or the repeat of an alert sent on its own (a silent
    "+N more" edit of that message).

    A repeat of a development still waiting for its digest is held too, whatever
    the chat's mode is now (it adds an outlet to that line; an edit of a digest
    message would garble it); a repeat of one a digest already told is not told again.
    """
    if parent is None:
        if not wants_digest:
            return None
    else:
        held, digest_id = c.execute(
            "SELECT held, digest_id FROM outbox WHERE id = ?", (parent,)
        ).fetchone()
        if not held:
            return None
        if digest_id is not None:
            return 0
    cur = c.execute(
        "INSERT OR IGNORE INTO outbox(chat_id, storyline_id, item_id, kind, parent_id, "
        "status, held, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 1, ?)",
        (chat_id, storyline_id, item_id, "send" if parent is None else "edit", parent, _ts(now)),
    )
    return cur.rowcount if parent is None else 0


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
    last hour: alerts and "+N more" edits (summaries, folded edits and alerts that
    went into a digest, one message for them all, not counted)."""
    sent = c.execute(
        "SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND storyline_id = ? "
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped' AND held = 0",
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
        "AND created_at > ? AND summary_count = 0 AND status != 'dropped' AND held = 0",
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
