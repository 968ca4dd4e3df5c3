"""Liveness of a running bot, judged from what it last wrote to its database.

The bot records two heartbeats in the ``meta`` table: ``last_poll`` at the end
of every poll pass and ``telegram_ok`` after every successful round of Bot API
calls. ``assess_health`` turns them into a verdict (pure: ``now`` and the poll
interval come in as arguments); ``check_database`` (a SQLite file),
``check_postgres`` (``STORYWATCH_DATABASE_URL``) and ``check_store`` (whichever
is configured) do the I/O for ``storywatch health`` (the container's
HEALTHCHECK) and for the ``/healthz`` endpoint, so both always give the same
answer.

On PostgreSQL the heartbeats are shared by every process on the database: any
worker's pass counts as the last poll pass, and the front end's calls count as
Telegram answering. The check there judges the deployment (the database answers,
someone polls, someone reaches Telegram), not one container.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

LAST_POLL_KEY = "last_poll"
TELEGRAM_OK_KEY = "telegram_ok"
# Feeds that failed with an internal error (our bug, not the feed's) in the
# last pass, and in all passes since the database was created.
INTERNAL_LAST_POLL_KEY = "internal_errors.last_poll"
INTERNAL_TOTAL_KEY = "internal_errors.total"
HEALTH_KEYS = (LAST_POLL_KEY, TELEGRAM_OK_KEY, INTERNAL_LAST_POLL_KEY)

# A pass may legitimately be late by a couple of intervals (a slow feed, a
# backoff, a restart); below two minutes the check would flap on short test
# intervals.
POLL_INTERVALS_ALLOWED = 3.0
POLL_FLOOR_SECONDS = 120.0
# The bot talks to Telegram far more often than this (getUpdates long-polls
# for at most a minute), so five silent minutes means the link is broken.
TELEGRAM_MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    """``ok`` with no reasons, or not ok with one human-readable reason per problem."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.ok:
            return "healthy"
        return "unhealthy: " + "; ".join(self.reasons)


def poll_max_age(poll_interval: float) -> float:
    """How old the last poll pass may be before the bot counts as stuck."""
    return max(POLL_INTERVALS_ALLOWED * poll_interval, POLL_FLOOR_SECONDS)


def _parse(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # The bot writes aware UTC timestamps; a naive one can only mean UTC too.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_one(
    meta: Mapping[str, str | None], key: str, what: str, now: datetime, max_age: float
) -> str | None:
    raw = meta.get(key)
    if raw is None or not raw.strip():
        return f"no {what} yet"
    moment = _parse(raw.strip())
    if moment is None:
        return f"cannot read the time of the last {what} ({raw!r})"
    age = (now - moment).total_seconds()
    # A timestamp slightly in the future (clock step between processes) is fresh.
    if age > max_age:
        return f"no {what} for {age:,.0f} s (last {moment.astimezone(UTC).isoformat()})"
    return None


def assess_health(
    meta: Mapping[str, str | None],
    now: datetime,
    poll_interval: float,
    *,
    telegram_max_age: float = TELEGRAM_MAX_AGE_SECONDS,
) -> HealthVerdict:
    """Judge the heartbeats in ``meta`` (values as stored: ISO-8601 strings) at ``now``."""
    reasons = [
        r
        for r in (
            _check_one(meta, LAST_POLL_KEY, "poll pass", now, poll_max_age(poll_interval)),
            _check_one(meta, TELEGRAM_OK_KEY, "successful Telegram call", now, telegram_max_age),
        )
        if r is not None
    ]
    internal = (meta.get(INTERNAL_LAST_POLL_KEY) or "0").strip()
    if internal.isdigit() and int(internal) > 0:
        reasons.append(
            f"{internal} feed(s) failed with an internal error in the last poll pass "
            "(a Storywatch bug, not the feeds: see the log)"
        )
    return HealthVerdict(ok=not reasons, reasons=reasons)


def read_health_meta(db_path: Path) -> dict[str, str | None] | None:
    """The heartbeat values from the database at ``db_path``; None when it does not exist.

    Opened read-only on purpose, not through ``Database.open``: the check runs
    every 30 s beside the bot, and must neither create the database, run
    migrations nor take a write lock. Raises ``sqlite3.Error`` on a database
    that cannot be read.
    """
    if not db_path.exists():
        return None
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        verdict = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the database is corrupt (quick_check: {verdict[:200]})")
        try:
            marks = ",".join("?" * len(HEALTH_KEYS))
            rows = conn.execute(
                f"SELECT key, value FROM meta WHERE key IN ({marks})", HEALTH_KEYS  # noqa: S608
            ).fetchall()
        except sqlite3.OperationalError as exc:
            # Created but not migrated yet: the bot is still starting.
            if "no such table" in str(exc):
                return dict.fromkeys(HEALTH_KEYS)
            raise
    finally:
        conn.close()
    return _known(dict(rows))


def _known(meta: Mapping[str, object]) -> dict[str, str | None]:
    out: dict[str, str | None] = dict.fromkeys(HEALTH_KEYS)
    out.update({str(k): None if v is None else str(v) for k, v in meta.items()})
    return out


def read_postgres_meta(url: str) -> dict[str, str | None]:
    """The heartbeat values from the PostgreSQL database at ``url``, after a
    ``SELECT 1``; read in one autocommit connection (no pool, no migration, no
    write). Raises ``psycopg.Error`` when the server cannot be reached or read."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1").fetchone()
        try:
            rows = conn.execute(
                "SELECT key, value FROM meta WHERE key = ANY(%s)", (list(HEALTH_KEYS),)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return _known({})  # not migrated yet: the first process is still starting
    return _known(dict(rows))


def _conninfo(url: str) -> dict[str, object] | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return dict(conninfo_to_dict(url))
    except Exception:  # a URL psycopg cannot read: never echoed back
        return None


def postgres_place(url: str) -> str:
    """Where ``url`` points, without its user or password: ``host:port/dbname``."""
    info = _conninfo(url)
    if info is None:
        return "an unreadable STORYWATCH_DATABASE_URL"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def check_postgres(url: str, poll_interval: float, now: datetime) -> HealthVerdict:
    """The verdict for the processes sharing the PostgreSQL database at ``url``;
    never raises, and never shows the URL's credentials."""
    import psycopg

    try:
        meta = read_postgres_meta(url)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        secret = (_conninfo(url) or {}).get("password")
        if secret:
            first = first.replace(str(secret), "***")
        return HealthVerdict(ok=False, reasons=[
            f"cannot read PostgreSQL at {postgres_place(url)}: {first}"
        ])
    return assess_health(meta, now, poll_interval)


def check_store(
    db_path: Path, database_url: str | None, poll_interval: float, now: datetime
) -> HealthVerdict:
    """The verdict for the configured database: PostgreSQL when ``database_url``
    is set, else the SQLite file at ``db_path``."""
    if database_url is not None:
        return check_postgres(database_url, poll_interval, now)
    return check_database(db_path, poll_interval, now)


def check_database(db_path: Path, poll_interval: float, now: datetime) -> HealthVerdict:
    """The verdict for the bot whose database is ``db_path``; never raises."""
    try:
        meta = read_health_meta(db_path)
    except sqlite3.Error as exc:
        text = str(exc)
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            why = f"database {db_path} is corrupt ({text}): stop the bot and restore a backup"
        else:
            why = f"cannot read database {db_path}: {text}"
        return HealthVerdict(ok=False, reasons=[why])
    if meta is None:
        return HealthVerdict(ok=False, reasons=[f"not started yet (no database at {db_path})"])
    return assess_health(meta, now, poll_interval)
