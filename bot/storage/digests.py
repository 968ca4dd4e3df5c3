"""Digests in the database: built once per chat and slot, sent part by part.

Outbox rows held for a digest (``held = 1``, see ``storage.fanout``) are never
claimed as alerts. When the first digest time after a chat's oldest held row
has come (``schedule.next_slot``), :func:`build_due` gathers every held row of
the chat into one ``digests`` row, in ONE transaction: the parts are rendered
then and stored, and the rows point at the digest. A digest time that passed
while the bot was down is therefore built at the next start, once: the rows it
gathers are no longer held-and-free, and ``UNIQUE (chat_id, slot)`` backs that.

Sending follows the outbox's rules with a lease (``claimed_at``): a claimed
digest is 'sending'; after each part Telegram accepted, ``parts_sent`` and
the message id are written in one transaction, so a 429, a shutdown or a
crash in the middle resumes at the first part not recorded as sent (a crash
between Telegram's answer and that write can repeat that one part, as an
alert can be repeated). When the last part is recorded, the digest and all
its outbox rows are 'sent' together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.delivery.digest import Development, render_digest
from bot.delivery.schedule import Delivery, next_slot
from bot.storage.engine import Conn, Row, timestamp


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class DigestJob:
    """A claimed digest: its parts and how many were sent already."""

    id: int
    chat_id: int
    parts: tuple[str, ...]
    parts_sent: int
    attempts: int
    message_ids: tuple[int, ...] = ()


_HELD = "o.held = 1 AND o.digest_id IS NULL AND o.status = 'pending'"


# Per chat with held alerts: its oldest one and its delivery settings.
CANDIDATES = (
    "SELECT o.chat_id, MIN(o.created_at), ch.delivery, ch.digest_times, ch.quiet_hours, "  # noqa: S608
    f"ch.tz FROM outbox o JOIN chats ch ON ch.id = o.chat_id WHERE {_HELD} "
    "AND ch.active = 1 GROUP BY o.chat_id, ch.delivery, ch.digest_times, ch.quiet_hours, ch.tz"
)


def due_slot(row: Sequence[object], now: datetime) -> datetime | None:
    """The digest time a candidate row (see ``CANDIDATES``) is due at, if it has come."""
    _, oldest, mode, times, quiet, tz = row
    prefs = Delivery.stored(*(None if v is None else str(v) for v in (mode, times, quiet, tz)))
    slot = next_slot(prefs, timestamp(oldest if isinstance(oldest, datetime) else str(oldest)))
    return slot if slot <= now else None


def build_due(c: Conn, now: datetime) -> list[int]:
    """Build every digest whose time has come; returns the new digests' ids."""
    built: list[int] = []
    for row in c.execute(CANDIDATES).fetchall():
        slot = due_slot(row, now)
        if slot is None:
            continue
        digest_id = _build(c, int(row[0]), slot, now, row[5])
        if digest_id is not None:
            built.append(digest_id)
    return built


def build_now(c: Conn, chat_id: int, now: datetime) -> int | None:
    """A digest of every held alert of the chat, due now; None if none waits."""
    held = c.execute(
        f"SELECT COUNT(*) FROM outbox o WHERE o.chat_id = ? AND {_HELD}", (chat_id,)  # noqa: S608
    ).fetchone()[0]
    if not held:
        return None
    tz = c.execute("SELECT tz FROM chats WHERE id = ?", (chat_id,)).fetchone()[0]
    return _build(c, chat_id, now, now, tz)


def _build(
    c: Conn, chat_id: int, slot: datetime, now: datetime, tz: str | None
) -> int | None:
    c.row_factory = sqlite3.Row
    try:
        rows = c.execute(
            "SELECT o.id, o.kind, o.parent_id, o.storyline_id, o.item_id, "  # noqa: S608
            "s.title AS storyline_title, s.active, i.title, i.link, i.published, i.source, "
            "m.created_at AS matched_at FROM outbox o "
            "JOIN storylines s ON s.id = o.storyline_id JOIN items i ON i.id = o.item_id "
            "JOIN matches m ON m.item_id = o.item_id AND m.storyline_id = o.storyline_id "
            f"WHERE o.chat_id = ? AND {_HELD} ORDER BY o.id",
            (chat_id,),
        ).fetchall()
    finally:
        c.row_factory = None
    devs = developments(rows, now)
    ids = [int(r[0]) for r in rows]
    if not devs:
        c.execute(
            f"UPDATE outbox SET status = 'dropped', last_error = 'nothing left to tell' "  # noqa: S608
            f"WHERE id IN ({','.join('?' * len(ids))})", ids,
        )
        return None
    parts = render_digest(devs, slot, tz)
    row = c.execute(
        "INSERT OR IGNORE INTO digests(chat_id, slot, parts, created_at) VALUES (?, ?, ?, ?) "
        "RETURNING id",
        (chat_id, _ts(slot), json.dumps(parts), _ts(now)),
    ).fetchone()
    if row is None:  # that slot's digest was built already: these rows came later
        row = c.execute(
            "INSERT INTO digests(chat_id, slot, parts, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (chat_id, _ts(now), json.dumps(parts), _ts(now)),
        ).fetchone()
    digest_id = int(row[0])
    c.executemany("UPDATE outbox SET digest_id = ? WHERE id = ?", [(digest_id, i) for i in ids])
    return digest_id


@dataclass(slots=True)
class _Draft:
    sid: int
    stitle: str
    title: str
    link: str | None
    when: datetime
    outlets: list[str] = field(default_factory=list)
    duplicates: int = 0
    also: list[int] = field(default_factory=list)


def developments(rows: Sequence[Row], now: datetime) -> list[Development]:
    """One development per item (under the first of its storylines), with the
    outlets of the reports collapsed into it ("edit" rows)."""
    by_item: dict[int, _Draft] = {}
    row_item: dict[int, int] = {}
    for r in rows:
        if r["kind"] == "edit":
            owner = row_item.get(r["parent_id"]) if r["parent_id"] is not None else None
            if owner is not None:
                by_item[owner].outlets.append(r["source"] or "")
                by_item[owner].duplicates += 1
            continue
        if not r["active"]:
            continue
        item_id = int(r["item_id"])
        row_item[int(r["id"])] = item_id
        draft = by_item.get(item_id)
        if draft is not None:
            draft.also.append(int(r["storyline_id"]))
            continue
        when = timestamp(r["published"] or r["matched_at"])
        if when > now:  # a feed's date in the future: when we saw it instead
            when = timestamp(r["matched_at"])
        by_item[item_id] = _Draft(int(r["storyline_id"]), r["storyline_title"], r["title"],
                                  r["link"], when, [r["source"] or ""])
    return [
        Development(d.sid, d.stitle, d.title, d.link, d.when, tuple(d.outlets), d.duplicates,
                    tuple(d.also))
        for d in by_item.values()
    ]


def claim(c: Conn, now: datetime, limit: int) -> list[DigestJob]:
    rows = c.execute(
        "SELECT d.id, d.chat_id, d.parts, d.parts_sent, d.attempts, d.message_ids "
        "FROM digests d JOIN chats ch ON ch.id = d.chat_id WHERE d.status = 'pending' "
        "AND ch.active = 1 AND (d.not_before IS NULL OR d.not_before <= ?) ORDER BY d.id LIMIT ?",
        (_ts(now), limit),
    ).fetchall()
    c.executemany(
        "UPDATE digests SET status = 'sending', attempts = attempts + 1, claimed_at = ? "
        "WHERE id = ?", [(_ts(now), r[0]) for r in rows],
    )
    return [DigestJob(int(r[0]), int(r[1]), tuple(json.loads(r[2])), int(r[3]), int(r[4]) + 1,
                      tuple(json.loads(r[5]))) for r in rows]


def part_sent(
    c: Conn, digest_id: int, index: int, message_id: int | None, now: datetime
) -> None:
    """Record part ``index`` as delivered; the last one settles the digest and its rows."""
    row = c.execute(
        "SELECT parts, parts_sent, message_ids FROM digests WHERE id = ?", (digest_id,)
    ).fetchone()
    if row is None or int(row[1]) != index:
        return  # recorded already (or the digest is gone)
    total = len(json.loads(row[0]))
    ids = [*json.loads(row[2]), message_id]
    done = index + 1 >= total
    c.execute(
        "UPDATE digests SET parts_sent = ?, message_ids = ?, last_error = NULL, claimed_at = ?, "
        "status = CASE WHEN ? THEN 'sent' ELSE status END, sent_at = CASE WHEN ? THEN ? "
        "ELSE sent_at END WHERE id = ?",
        (index + 1, json.dumps(ids), _ts(now), done, done, _ts(now), digest_id),
    )
    if done:
        c.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, message_id = ?, last_error = NULL "
            "WHERE digest_id = ? AND status IN ('pending', 'sending')",
            (_ts(now), ids[0], digest_id),
        )


def release(
    c: Conn, digest_id: int, not_before: datetime, error: str, *, counted: bool
) -> None:
    """Pending again after ``not_before``; ``counted`` False gives the attempt back
    (held by a limit or a 429, or cut short by shutdown: not really attempted)."""
    c.execute(
        "UPDATE digests SET status = 'pending', not_before = ?, last_error = ?, claimed_at = NULL, "
        "attempts = CASE WHEN ? THEN attempts ELSE MAX(attempts - 1, 0) END "
        "WHERE id = ? AND status = 'sending'",
        (_ts(not_before), error[:300], counted, digest_id),
    )


def fail(c: Conn, digest_id: int, error: str) -> None:
    c.execute("UPDATE digests SET status = 'failed', last_error = ? WHERE id = ?",
              (error[:300], digest_id))
    c.execute(
        "UPDATE outbox SET status = 'failed', last_error = ? WHERE digest_id = ? "
        "AND status IN ('pending', 'sending')", (error[:300], digest_id),
    )


def recover(
    c: Conn, now: datetime | None, lease: timedelta | None,
    *, keep: Collection[int] = (),
) -> int:
    """Digests left 'sending' go back to pending: all of them at start (``now`` None),
    else those claimed longer than ``lease`` ago (each part sent renews the claim),
    except ``keep`` (being sent by this process)."""
    if now is None or lease is None:
        return c.execute(
            "UPDATE digests SET status = 'pending', claimed_at = NULL WHERE status = 'sending'"
        ).rowcount
    rows = c.execute(
        "SELECT id FROM digests WHERE status = 'sending' "
        "AND (claimed_at IS NULL OR claimed_at <= ?)", (_ts(now - lease),),
    ).fetchall()
    stale = [(int(r[0]),) for r in rows if int(r[0]) not in keep]
    c.executemany(
        "UPDATE digests SET status = 'pending', claimed_at = NULL, "
        "last_error = 'claim expired; sending again' WHERE id = ? AND status = 'sending'",
        stale,
    )
    return len(stale)
