"""The repository: every read and write of the SQLite database goes through here.

One connection per ``Database`` object, WAL mode, a busy timeout, and
``BEGIN IMMEDIATE`` for read-then-write transactions so two processes (the bot
and a CLI command) never deadlock on a lock upgrade. Methods are synchronous and
short; async callers run them in a thread when they may block.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.delivery.schedule import Delivery
from bot.errors import ConfigError
from bot.models import Feed, FeedState, Item, Match, Storyline
from bot.parsing.normalize import content_key
from bot.planner import alerts_allowed
from bot.storage import digests, faults
from bot.storage.digests import DigestJob
from bot.storage.engine import Conn, PgConn, Row, as_datetime, timestamp
from bot.storage.fanout import fan_out
from bot.storage.schema import migrate, migrate_postgres

log = logging.getLogger(__name__)

# The meta row holding the matcher's learned state (JSON, zlib, base64).
MATCHER_STATE_KEY = "matcher_state"

# How long one attempt at the write lock waits, and how many attempts before
# giving up with a clear error: 3 x 30 s outlasts a backup or a manual query.
BUSY_TIMEOUT = 30.0
LOCK_ATTEMPTS = 3


def _is_empty_file(path: Path) -> bool:
    """A 0-byte database file with no write-ahead log holding its content."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0)


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | datetime | None) -> datetime | None:
    return as_datetime(value)


def _redact(url: str) -> str:
    """A database URL without its password, fit for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))


def _integrity_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


def _ids(outbox_ids: int | Sequence[int]) -> list[int]:
    """One outbox id, or the ids of the rows one message carries, as a list."""
    return [outbox_ids] if isinstance(outbox_ids, int) else list(outbox_ids)


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


# Feedback read per storyline, chat scope and verdict (newest first); retention
# prunes what ranks beyond it, since no pass would read it.
FEEDBACK_KEPT = 200
PENDING_PER_CHAT = 5  # /track previews a chat may leave open at once
FEEDBACK_RANK = (
    "ROW_NUMBER() OVER (PARTITION BY f.storyline_id, f.scope, "
    "CASE f.scope WHEN 'chat' THEN f.chat_id END, f.verdict ORDER BY f.id DESC)"
)


@dataclass(frozen=True, slots=True)
class StorylineRow:
    """A storyline as listed for a chat."""

    storyline: Storyline
    subscribers: int
    subscribed: bool
    created_by: int | None
    sensitivity: str = "normal"
    muted_until: datetime | None = None  # this chat's mute of it, if any


@dataclass(frozen=True, slots=True)
class MatchToStore:
    """A match of a new item, ready to be written; ``duplicate_of`` names an
    earlier item of the same storyline that already told this development."""

    match: Match
    duplicate_of_key: tuple[int | None, str] | None = None


@dataclass(frozen=True, slots=True)
class RecentMatch:
    """An item already matched to a storyline, for near-duplicate collapse."""

    storyline_id: int
    item: Item
    item_id: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert to deliver, joined with what rendering needs."""

    id: int
    chat_id: int
    kind: str
    attempts: int
    storyline_id: int
    storyline_title: str
    item: Item
    score: float
    reason: str
    parent_message_id: int | None
    parent_id: int | None
    item_id: int  # rows of one chat, item and kind go out as one message
    message_id: int | None = None  # the Telegram message that delivered it, once sent
    tz: str | None = None  # the chat's time zone for the alert's times
    summary_count: int = 0
    """Above 0: a storm summary of that many matches held back since ``queued_at``."""
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChatFigures:
    """One chat's own numbers for /status."""

    following: int
    created: int
    sent: int
    pending: int
    failed: int


@dataclass(frozen=True, slots=True)
class MatchRow:
    """A stored match with its item, for ``storywatch matches``."""

    storyline_id: int
    storyline_title: str
    score: float
    reason: str
    created_at: datetime
    item: Item
    duplicate: bool


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One development of a storyline: its item, when it matched, and the reports
    collapsed into it as the same development."""

    item: Item
    matched_at: datetime
    duplicates: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True)
class PollCommit:
    """What one committed poll wrote."""

    new_items: int
    matches: int
    alerts: int


def _pack_state(state: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(state).encode(), 6)).decode()


def _unpack_state(blob: str | None) -> dict[str, Any] | None:
    if not blob:
        return None
    try:
        state = json.loads(zlib.decompress(base64.b64decode(blob)))
    except (ValueError, zlib.error):
        log.warning("saved matcher state is unreadable; starting from recent items")
        return None
    return state if isinstance(state, dict) else None


class DuplicateError(Exception):
    """The thing being added exists already."""


class Database:
    """The Storywatch database; construct with :meth:`open` (SQLite) or
    :meth:`open_postgres`. One class serves both engines: its SQL is written
    in SQLite's dialect and rewritten for PostgreSQL by ``storage.engine``."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        path: Path,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        lock_attempts: int = LOCK_ATTEMPTS,
        pool: Any = None,
    ) -> None:
        self._conn = conn
        self._pool = pool  # psycopg_pool.ConnectionPool on PostgreSQL
        self.engine = "sqlite" if pool is None else "postgres"
        self.path = path
        self._busy_timeout = busy_timeout
        self._lock_attempts = max(1, lock_attempts)
        # One connection shared by threads (asyncio.to_thread); sqlite3 objects
        # are not safe to use concurrently, so serialise access.
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, path: Path, *, busy_timeout: float = BUSY_TIMEOUT, lock_attempts: int = LOCK_ATTEMPTS
    ) -> Database:
        """Open (creating if needed) the database at ``path``, check it and migrate it.

        Refuses (ConfigError) a 0-byte file where a database was, and a database
        whose ``PRAGMA quick_check`` fails: neither is silently replaced or written.
        """
        fresh = not path.exists()
        if not fresh and _is_empty_file(path):
            raise faults.empty_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open database {path}: {exc}") from None
        try:
            if fresh:
                # Only possible before the first table exists; lets pruning give
                # space back to the file system (PRAGMA incremental_vacuum).
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            else:
                verdict = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
                if verdict != "ok":
                    raise faults.corrupt_at_start(path, verdict)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise faults.corrupt_at_start(path, str(exc)) from None
            raise ConfigError(f"cannot use database {path}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, busy_timeout=busy_timeout, lock_attempts=lock_attempts)

    @classmethod
    def open_postgres(
        cls, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 8
    ) -> Database:
        """Connect to PostgreSQL at ``url`` (a pool) and migrate; ``schema`` puts
        every table in that schema (tests give each test its own)."""
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigError(
                "STORYWATCH_DATABASE_URL names PostgreSQL, but psycopg is not installed: "
                "pip install 'storywatch[postgres]'"
            ) from None
        from psycopg.conninfo import conninfo_to_dict

        try:
            given = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise ConfigError("STORYWATCH_DATABASE_URL is not a valid PostgreSQL URL") from None
        # Times are compared and returned in UTC; a schema in the URL's options stays.
        options = f"{given.get('options') or ''} -c timezone=UTC".strip()
        if schema is not None:
            if not schema.isidentifier():
                raise ValueError(f"not a schema name: {schema!r}")
            options += f" -c search_path={schema}"
        pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False,
            kwargs={"autocommit": True, "options": options,
                    "cursor_factory": psycopg.ClientCursor},
        )
        try:
            pool.open(wait=True, timeout=15.0)
        except Exception as exc:
            pool.close()
            raise ConfigError(
                f"cannot connect to PostgreSQL ({_redact(url)}): {type(exc).__name__}"
            ) from None
        db = cls(None, Path(_redact(url)), pool=pool)
        try:
            with db._connection() as c:
                migrate_postgres(c)
        except BaseException:
            pool.close()
            raise
        return db

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            return
        with self._lock:
            assert self._conn is not None
            self._conn.close()

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        """The connection to use: SQLite's one (serialised), or one from the pool."""
        if self._pool is None:
            with self._lock:
                assert self._conn is not None
                yield self._conn
        else:
            with self._pool.connection() as raw:
                yield PgConn(raw)

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception.

        Taking the write lock is retried ``lock_attempts`` times (each waits the
        busy timeout), then StorageBusyError says who to look for. SQLite errors
        come out as StorageError (full disk, damage) with the database's path.
        """
        with self._connection() as conn:
            self._begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # After SQLITE_FULL or an I/O error SQLite may have rolled back
                # already; a second ROLLBACK would hide the real error.
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception as rollback_exc:
                        log.warning("rollback after %s failed: %s", type(exc).__name__,
                                    rollback_exc)
                if isinstance(exc, sqlite3.Error) and faults.is_fault(exc):
                    raise faults.translate(exc, self.path) from exc
                raise

    def _begin(self, conn: Conn) -> None:
        if self._pool is not None:
            conn.execute("BEGIN")  # row locks, not a database lock: nothing to retry
            return
        for attempt in range(1, self._lock_attempts + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not faults.is_busy(exc):
                    raise faults.translate(exc, self.path) from exc
                waited = attempt * self._busy_timeout
                if attempt == self._lock_attempts:
                    raise faults.translate(exc, self.path, waited=waited) from exc
                log.warning(
                    "database %s is locked by another process (%.1f s so far); "
                    "waiting again (%d of %d)", self.path, waited, attempt + 1,
                    self._lock_attempts,
                )

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self._connection() as conn:
            try:
                cur = conn.execute(sql, params)
                cur.row_factory = sqlite3.Row
                return list(cur.fetchall())
            except sqlite3.Error as exc:
                if not faults.is_fault(exc):
                    raise
                raise faults.translate(exc, self.path) from exc

    def pragma_int(self, name: str) -> int:
        """The value of an integer PRAGMA (``page_count``, ``freelist_count``...)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        if self.engine != "sqlite":
            raise ValueError("PRAGMA is SQLite's; this database is PostgreSQL")
        return int(self._query(f"PRAGMA {name}")[0][0])

    def integrity_check(self) -> str:
        if self.engine != "sqlite":
            self._query("SELECT 1")  # PostgreSQL checks its pages itself; reachable is ok
            return "ok"
        return str(self._query("PRAGMA integrity_check")[0][0])

    # -- meta ---------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    # -- matcher state ------------------------------------------------------

    def save_matcher_state(self, state: dict[str, Any]) -> None:
        """Keep what the matcher learned (``Matcher.export_state``), compressed,
        replacing what was saved (one process; workers use :meth:`update_matcher_state`)."""
        self.set_meta(MATCHER_STATE_KEY, _pack_state(state))

    def load_matcher_state(self) -> dict[str, Any] | None:
        """The matcher state saved last, or None (never saved, or unreadable)."""
        return _unpack_state(self.get_meta(MATCHER_STATE_KEY))

    def update_matcher_state(
        self, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> None:
        """Replace the saved matcher state with ``change(saved)`` in one transaction
        that holds the row: processes saving at once each change what the other
        wrote (``storylines.state_merge``), none overwrites it. ``change`` is called
        inside the transaction: it must be quick and pure."""
        with self.transaction() as c:  # SQLite: BEGIN IMMEDIATE, the write lock
            if self.engine != "sqlite":
                # A row to lock, even the first time; the loser of a race waits here.
                c.execute("INSERT INTO meta(key, value) VALUES (?, '') "
                          "ON CONFLICT(key) DO NOTHING", (MATCHER_STATE_KEY,))
            lock = "" if self.engine == "sqlite" else " FOR UPDATE"
            rows = c.execute("SELECT value FROM meta WHERE key = ?" + lock,  # noqa: S608
                             (MATCHER_STATE_KEY,)).fetchall()
            saved = _unpack_state(str(rows[0][0]) if rows and rows[0][0] else None)
            c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (MATCHER_STATE_KEY, _pack_state(change(saved))),
            )

    # -- feeds --------------------------------------------------------------

    @staticmethod
    def _feed(row: Row) -> Feed:
        return Feed(
            id=row["id"],
            url=row["url"],
            title=row["title"],
            primed=bool(row["primed"]),
            state=FeedState(
                etag=row["etag"],
                last_modified=row["last_modified"],
                body_hash=row["body_hash"],
                next_check=_dt(row["next_check"]),
                consecutive_errors=row["consecutive_errors"],
                last_error=row["last_error"],
                last_ok=_dt(row["last_ok"]),
            ),
        )

    def add_feed(
        self, url: str, *, now: datetime, title: str | None = None, added_by: int | None = None,
        keep_title: bool = False,
    ) -> Feed:
        """Add a feed; :class:`DuplicateError` if that URL is already watched.
        ``keep_title``: polls never replace ``title`` with the feed's own."""
        try:
            with self.transaction() as c:
                feed_id = int(c.execute(
                    "INSERT INTO feeds(url, title, added_at, added_by, title_kept) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (url, title, _ts(now), added_by, int(keep_title and title is not None)),
                ).fetchone()[0])
        except _integrity_errors():
            raise DuplicateError(f"feed {url} is already watched") from None
        feed = self.get_feed(feed_id)
        assert feed is not None
        return feed

    def get_feed(self, feed_id: int) -> Feed | None:
        rows = self._query("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return self._feed(rows[0]) if rows else None

    def find_feed(self, url: str) -> Feed | None:
        rows = self._query("SELECT * FROM feeds WHERE url = ?", (url,))
        return self._feed(rows[0]) if rows else None

    def list_feeds(self) -> list[Feed]:
        return [self._feed(r) for r in self._query("SELECT * FROM feeds ORDER BY id")]

    def remove_feed(self, feed_id: int) -> bool:
        with self.transaction() as c:
            return c.execute("DELETE FROM feeds WHERE id = ?", (feed_id,)).rowcount > 0

    def make_all_due(self) -> None:
        """Every feed due now (``poll --once --force``); HTTP validators are kept."""
        with self.transaction() as c:
            c.execute("UPDATE feeds SET next_check = NULL")

    def due_feeds(self, now: datetime) -> list[Feed]:
        rows = self._query(
            "SELECT * FROM feeds WHERE next_check IS NULL OR next_check <= ? "
            "ORDER BY next_check IS NOT NULL, next_check, id",
            (_ts(now),),
        )
        return [self._feed(r) for r in rows]

    def lease_due_feeds(
        self, now: datetime, *, worker: str, lease: timedelta, limit: int
    ) -> list[Feed]:
        """Lease up to ``limit`` feeds due at ``now`` to ``worker`` until ``now + lease``;
        a feed leased to another worker is skipped until its lease runs out.

        Writing the poll's outcome (``commit_poll``, ``record_feed_state``) ends
        the lease and moves the feed's next check past this interval, so each
        feed is polled by one worker per interval. On PostgreSQL the candidate
        rows are locked with ``FOR UPDATE SKIP LOCKED``: workers leasing at the
        same moment take different feeds instead of waiting for each other.
        """
        lock = "" if self.engine == "sqlite" else " FOR UPDATE SKIP LOCKED"
        with self.transaction() as c:
            rows = c.execute(
                "SELECT id FROM feeds WHERE (next_check IS NULL OR next_check <= ?) "  # noqa: S608
                "AND (leased_until IS NULL OR leased_until <= ?) "
                "ORDER BY next_check IS NOT NULL, next_check, id LIMIT ?" + lock,
                (_ts(now), _ts(now), limit),
            ).fetchall()
            ids = [int(r[0]) for r in rows]
            if ids:
                c.execute(
                    "UPDATE feeds SET leased_until = ?, leased_by = ? "  # noqa: S608
                    f"WHERE id IN ({_marks(ids)})",
                    (_ts(now + lease), worker, *ids),
                )
        if not ids:
            return []
        got = self._query(
            f"SELECT * FROM feeds WHERE id IN ({_marks(ids)}) "  # noqa: S608
            "ORDER BY next_check IS NOT NULL, next_check, id",
            ids,
        )
        return [self._feed(r) for r in got]

    def release_feed(self, feed_id: int, worker: str) -> None:
        """Give a leased feed back unpolled (shutdown): due again at once elsewhere."""
        with self.transaction() as c:
            c.execute(
                "UPDATE feeds SET leased_until = NULL, leased_by = NULL "
                "WHERE id = ? AND leased_by = ?",
                (feed_id, worker),
            )

    def take_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Hold the named lease until ``now + ttl``: True if ``holder`` has it now
        (it was free, expired, or already its own, then renewed)."""
        with self.transaction() as c:
            got = c.execute(
                "INSERT INTO leases(name, holder, leased_until) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                "leased_until = excluded.leased_until "
                "WHERE leases.holder = excluded.holder OR leases.leased_until <= ?",
                (name, holder, _ts(now + ttl), _ts(now)),
            ).rowcount
        return got > 0

    def drop_lease(self, name: str, holder: str) -> None:
        """Give the named lease up (a clean stop): another holder may take it at once."""
        with self.transaction() as c:
            c.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def lease_holder(self, name: str, now: datetime) -> str | None:
        rows = self._query(
            "SELECT holder FROM leases WHERE name = ? AND leased_until > ?", (name, _ts(now))
        )
        return str(rows[0]["holder"]) if rows else None

    def item_count(self, feed_id: int) -> int:
        rows = self._query("SELECT COUNT(*) FROM items WHERE feed_id = ?", (feed_id,))
        return int(rows[0][0])

    def record_feed_state(
        self, feed_id: int, state: FeedState, *, now: datetime, title: str | None = None
    ) -> None:
        """Store a feed's HTTP state after a fetch that brought no new items."""
        with self.transaction() as c:
            self._write_state(c, feed_id, state, now, title)

    def record_feed_states(self, states: Sequence[tuple[int, FeedState, datetime]]) -> None:
        """:meth:`record_feed_state` for many feeds ``(feed_id, state, now)`` in one
        transaction (a steady pass of 304s writes them in batches)."""
        with self.transaction() as c:
            for feed_id, state, now in states:
                self._write_state(c, feed_id, state, now, None)

    @staticmethod
    def _write_state(
        c: Conn, feed_id: int, state: FeedState, now: datetime, title: str | None
    ) -> None:
        c.execute(
            "UPDATE feeds SET etag = ?, last_modified = ?, body_hash = ?, next_check = ?, "
            "consecutive_errors = ?, last_error = ?, last_ok = ?, last_checked = ?, "
            "title = CASE WHEN title_kept = 1 THEN title ELSE COALESCE(?, title) END, "
            "leased_until = NULL, leased_by = NULL WHERE id = ?",
            (
                state.etag,
                state.last_modified,
                state.body_hash,
                _ts(state.next_check),
                state.consecutive_errors,
                state.last_error,
                _ts(state.last_ok),
                _ts(now),
                title,
                feed_id,
            ),
        )

    # -- items and the poll transaction -------------------------------------

    def known_keys(self, feed_id: int, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` this feed has stored already."""
        known: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = _marks(chunk)
            rows = self._query(
                f"SELECT key FROM items WHERE feed_id = ? AND key IN ({marks})",  # noqa: S608
                (feed_id, *chunk),
            )
            known.update(r["key"] for r in rows)
        return known

    def known_item_keys(self, feed_id: int, items: Sequence[Item]) -> set[str]:
        """Keys of ``items`` this feed has stored, by key or by content (an item
        whose guid changed but whose title, summary and link did not)."""
        known = self.known_keys(feed_id, [i.key for i in items])
        by_content = {
            content_key(i.title, i.summary, i.link): i.key for i in items if i.key not in known
        }
        hashes = list(by_content)
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT content_hash FROM items WHERE feed_id = ? "  # noqa: S608
                f"AND content_hash IN ({marks})",
                (feed_id, *chunk),
            )
            known.update(by_content[r["content_hash"]] for r in rows)
        return known

    def capped_feeds(self) -> list[tuple[int, str, int]]:
        """Feeds whose last poll listed more items than the cap: (id, name, skipped)."""
        rows = self._query(
            "SELECT id, COALESCE(title, url) AS name, items_capped FROM feeds "
            "WHERE items_capped > 0 ORDER BY id"
        )
        return [(int(r["id"]), str(r["name"]), int(r["items_capped"])) for r in rows]

    def commit_poll(
        self,
        feed_id: int,
        state: FeedState,
        *,
        now: datetime,
        title: str | None,
        items: Sequence[Item],
        matches: Sequence[MatchToStore],
        capped: int = 0,
        hourly_limit: int | None = None,
        excluded: Mapping[tuple[str, int], Collection[int]] | None = None,
    ) -> PollCommit:
        """Write a poll's outcome in ONE transaction: new items, their matches,
        the outbox rows for every active subscribed chat, and the feed state.

        Items already stored (same feed and key) are left as they were apart
        from their title and summary, so an edited headline keeps its identity
        and is not alerted again; an item under a new key with the same title,
        summary and link as one stored is the same item (churning guids). The first
        good poll of a feed primes it: its items are stored but nothing is
        alerted. ``capped`` is how many items the feed listed past the per-poll cap.
        ``hourly_limit`` bounds the alerts one chat gets for one storyline in an
        hour; matches past it are counted in one summary row (``storage.fanout``).
        ``excluded`` names, per (item key, storyline id), chats not to alert (their
        own feedback ruled the item out).
        """
        with self.transaction() as c:
            primed = bool(
                c.execute("SELECT primed FROM feeds WHERE id = ?", (feed_id,)).fetchone()[0]
            )
            new_ids: dict[str, int] = {}
            seen = _ts(now)
            for item in items:
                content = content_key(item.title, item.summary, item.link)
                row = c.execute(
                    "SELECT id FROM items WHERE feed_id = ? AND key = ?", (feed_id, item.key)
                ).fetchone()
                if row is not None:
                    c.execute(
                        "UPDATE items SET title = ?, summary = ?, content_hash = ?, "
                        "last_seen = ? WHERE id = ?",
                        (item.title, item.summary, content, seen, row[0]),
                    )
                    continue
                same = c.execute(
                    "SELECT id FROM items WHERE feed_id = ? AND content_hash = ? LIMIT 1",
                    (feed_id, content),
                ).fetchone()
                if same is not None:
                    # A new guid on an item we hold: the same item, not news.
                    c.execute("UPDATE items SET last_seen = ? WHERE id = ?", (seen, same[0]))
                    continue
                cur = c.execute(
                    "INSERT INTO items(feed_id, key, title, summary, link, published, source, "
                    "first_seen, last_seen, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING id",
                    (
                        feed_id,
                        item.key,
                        item.title,
                        item.summary,
                        item.link,
                        _ts(item.published),
                        item.source,
                        seen,
                        seen,
                        content,
                    ),
                )
                new_ids[item.key] = int(cur.fetchone()[0])
            match_count = alert_count = 0
            if alerts_allowed(primed):
                for m in matches:
                    item_id = new_ids.get(m.match.item_key)
                    if item_id is None:
                        continue
                    dup_id = self._resolve_item(c, m.duplicate_of_key)
                    cur = c.execute(
                        "INSERT OR IGNORE INTO matches(item_id, storyline_id, score, reason, "
                        "duplicate_of, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (item_id, m.match.storyline_id, m.match.score, m.match.reason, dup_id,
                         _ts(now)),
                    )
                    if cur.rowcount == 0:
                        continue
                    match_count += 1
                    alert_count += fan_out(
                        c, m.match.storyline_id, item_id, dup_id, now, hourly_limit,
                        (excluded or {}).get((m.match.item_key, m.match.storyline_id), ()),
                    )
            self._write_state(c, feed_id, state, now, title)
            # items_seen_at = the last_seen of every item in this body: retention
            # keeps items still in their feed (see bot.storage.retention).
            c.execute(
                "UPDATE feeds SET primed = 1, items_seen_at = ?, items_capped = ? WHERE id = ?",
                (seen, capped, feed_id),
            )
        return PollCommit(new_items=len(new_ids), matches=match_count, alerts=alert_count)

    @staticmethod
    def _resolve_item(c: Conn, key: tuple[int | None, str] | None) -> int | None:
        if key is None:
            return None
        row = c.execute(
            "SELECT id FROM items WHERE feed_id IS ? AND key = ?", (key[0], key[1])
        ).fetchone()
        return None if row is None else int(row[0])

    def held_items(
        self, chat_id: int, storyline_id: int, since: datetime, limit: int
    ) -> list[Item]:
        """The newest items of a storyline matched since ``since`` that were not sent
        to the chat one by one (what a storm summary lists)."""
        rows = self._query(
            "SELECT i.* FROM matches m JOIN items i ON i.id = m.item_id "
            "WHERE m.storyline_id = ? AND m.created_at >= ? AND m.duplicate_of IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.item_id = m.item_id "
            "AND o.storyline_id = m.storyline_id AND o.chat_id = ? AND o.summary_count = 0) "
            "ORDER BY m.created_at DESC, i.id DESC LIMIT ?",
            (storyline_id, _ts(since), chat_id, limit),
        )
        return [self._item(r) for r in rows]

    def recent_matches(
        self, storyline_ids: Sequence[int], since: datetime, *, per_storyline: int | None = None
    ) -> list[RecentMatch]:
        """Items matched (not as duplicates) to these storylines since ``since``,
        oldest first; with ``per_storyline``, only that many newest of each."""
        if not storyline_ids:
            return []
        marks = _marks(storyline_ids)
        rows = self._query(
            "SELECT * FROM (SELECT m.storyline_id, m.created_at AS matched_at, i.*, "  # noqa: S608
            "ROW_NUMBER() OVER (PARTITION BY m.storyline_id "
            "ORDER BY m.created_at DESC, i.id DESC) AS newest "
            "FROM matches m JOIN items i ON i.id = m.item_id "
            f"WHERE m.storyline_id IN ({marks}) AND m.created_at >= ? "
            "AND m.duplicate_of IS NULL) AS ranked WHERE ? IS NULL OR newest <= ? "
            "ORDER BY matched_at, id, storyline_id",
            (*storyline_ids, _ts(since), per_storyline, per_storyline),
        )
        return [RecentMatch(r["storyline_id"], self._item(r), r["id"]) for r in rows]

    def recent_items(self, limit: int) -> list[Item]:
        """The newest stored items, oldest first (matcher warm-up)."""
        rows = self._query("SELECT * FROM items ORDER BY id DESC LIMIT ?", (limit,))
        return [self._item(r) for r in reversed(rows)]

    @staticmethod
    def _item(row: Row) -> Item:
        return Item(
            key=row["key"],
            title=row["title"],
            summary=row["summary"],
            link=row["link"],
            published=_dt(row["published"]),
            source=row["source"],
            feed_id=row["feed_id"],
        )

    # -- storylines ---------------------------------------------------------

    @staticmethod
    def _storyline(row: Row) -> Storyline:
        aliases = tuple(
            (str(name), tuple(str(a) for a in alts)) for name, alts in json.loads(row["aliases"])
        )
        return Storyline(
            id=row["id"],
            title=row["title"],
            seed_text=row["seed_text"],
            aliases=aliases,
            keywords=tuple(json.loads(row["keywords"])),
            shared=bool(row["shared"]),
            slug=row["slug"],
            # Shared storylines form one group (owner None) whoever created them.
            owner=None if row["shared"] or row["created_by"] is None else int(row["created_by"]),
            # A chat's /track in reply to a report seeds it with news of that moment.
            seeded_at=_dt(row["created_at"])
            if row["seed_text"] and row["created_by"] is not None and not row["slug"]
            else None,
        )

    def add_storyline(
        self, storyline: Storyline, *, now: datetime, created_by: int | None = None
    ) -> Storyline:
        """Insert a storyline (its ``id`` is ignored) and return it with its new id."""
        with self.transaction() as c:
            new_id = int(c.execute(
                "INSERT INTO storylines(title, seed_text, aliases, keywords, shared, slug, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (*self._storyline_params(storyline), created_by, _ts(now)),
            ).fetchone()[0])
        got = self.get_storyline(new_id)
        assert got is not None
        return got

    @staticmethod
    def _storyline_params(s: Storyline) -> tuple[object, ...]:
        return (
            s.title,
            s.seed_text,
            json.dumps([[name, list(alts)] for name, alts in s.aliases]),
            json.dumps(list(s.keywords)),
            int(s.shared),
            s.slug,
        )

    def upsert_shared_storyline(self, storyline: Storyline, *, now: datetime) -> Storyline:
        """Create or refresh a shared storyline identified by its slug."""
        if not storyline.slug:
            raise ValueError("a shared storyline needs a slug")
        with self.transaction() as c:
            c.execute(
                "INSERT INTO storylines(title, seed_text, aliases, keywords, shared, slug, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(slug) DO UPDATE SET "
                "title = excluded.title, seed_text = excluded.seed_text, "
                "aliases = excluded.aliases, keywords = excluded.keywords, shared = 1, active = 1",
                (*self._storyline_params(storyline), _ts(now)),
            )
        rows = self._query("SELECT * FROM storylines WHERE slug = ?", (storyline.slug,))
        return self._storyline(rows[0])

    def get_storyline(self, storyline_id: int) -> Storyline | None:
        rows = self._query(
            "SELECT * FROM storylines WHERE id = ? AND active = 1", (storyline_id,)
        )
        return self._storyline(rows[0]) if rows else None

    def active_storylines(self) -> list[Storyline]:
        rows = self._query("SELECT * FROM storylines WHERE active = 1 ORDER BY id")
        return [self._storyline(r) for r in rows]

    def storylines_for_chat(self, chat_id: int | None) -> list[StorylineRow]:
        """Shared storylines, those the chat created and those it follows."""
        rows = self._query(
            "SELECT s.*, "
            "(SELECT COUNT(*) FROM subscriptions x WHERE x.storyline_id = s.id) AS subscribers, "
            "EXISTS(SELECT 1 FROM subscriptions x WHERE x.storyline_id = s.id "
            "AND x.chat_id IS ?) AS subscribed, "
            "(SELECT x.muted_until FROM subscriptions x WHERE x.storyline_id = s.id "
            "AND x.chat_id IS ?) AS muted_until "
            "FROM storylines s WHERE s.active = 1 AND (? IS NULL OR s.shared = 1 "
            "OR s.created_by = ? OR EXISTS(SELECT 1 FROM subscriptions x "
            "WHERE x.storyline_id = s.id AND x.chat_id = ?)) ORDER BY s.id",
            (chat_id, chat_id, chat_id, chat_id, chat_id),
        )
        return [
            StorylineRow(
                self._storyline(r), int(r["subscribers"]), bool(r["subscribed"]), r["created_by"],
                str(r["sensitivity"]), _dt(r["muted_until"]),
            )
            for r in rows
        ]

    def count_storylines_created_by(self, chat_id: int) -> int:
        rows = self._query(
            "SELECT COUNT(*) FROM storylines WHERE created_by = ? AND active = 1", (chat_id,)
        )
        return int(rows[0][0])

    def find_storyline_by_title(self, chat_id: int, title: str) -> Storyline | None:
        """An active storyline this chat created with the same title, case aside."""
        rows = self._query(
            "SELECT * FROM storylines WHERE active = 1 AND created_by = ? "
            "AND lower(title) = lower(?) ORDER BY id LIMIT 1",
            (chat_id, title),
        )
        return self._storyline(rows[0]) if rows else None

    def set_shared(self, storyline_id: int) -> bool:
        """List a storyline for every chat; False if it was shared already or is gone."""
        with self.transaction() as c:
            return c.execute(
                "UPDATE storylines SET shared = 1 WHERE id = ? AND active = 1 AND shared = 0",
                (storyline_id,),
            ).rowcount > 0

    def matches(
        self, *, since: datetime, storyline_id: int | None = None, limit: int = 200
    ) -> list[MatchRow]:
        """Stored matches since ``since``, newest first (what matched and why)."""
        rows = self._query(
            "SELECT m.storyline_id, s.title AS storyline_title, m.score, m.reason, "
            "m.created_at AS matched_at, m.duplicate_of, i.* FROM matches m "
            "JOIN storylines s ON s.id = m.storyline_id JOIN items i ON i.id = m.item_id "
            "WHERE m.created_at >= ? AND (? IS NULL OR m.storyline_id = ?) "
            "ORDER BY m.created_at DESC, i.id DESC LIMIT ?",
            (_ts(since), storyline_id, storyline_id, limit),
        )
        return [
            MatchRow(
                r["storyline_id"], r["storyline_title"], r["score"], r["reason"],
                timestamp(r["matched_at"]), self._item(r),
                r["duplicate_of"] is not None,
            )
            for r in rows
        ]

    def deactivate_storyline(self, storyline_id: int) -> bool:
        """Remove a storyline; alerts still queued for it are dropped with it."""
        with self.transaction() as c:
            changed = c.execute(
                "UPDATE storylines SET active = 0 WHERE id = ? AND active = 1", (storyline_id,)
            ).rowcount
            c.execute(
                "UPDATE outbox SET status = 'dropped', last_error = 'storyline removed' "
                "WHERE storyline_id = ? AND status = 'pending'",
                (storyline_id,),
            )
            return changed > 0

    # -- chats and subscriptions --------------------------------------------

    def upsert_chat(
        self, chat_id: int, *, now: datetime, type_: str = "private", title: str | None = None
    ) -> None:
        """Register a chat, or reactivate it if it had blocked the bot before."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO chats(id, type, title, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET type = excluded.type, "
                "title = COALESCE(excluded.title, chats.title), active = 1, inactive_reason = NULL",
                (chat_id, type_, title, _ts(now)),
            )

    def chat_is_active(self, chat_id: int) -> bool:
        rows = self._query("SELECT active FROM chats WHERE id = ?", (chat_id,))
        return bool(rows and rows[0]["active"])

    def deactivate_chat(self, chat_id: int, reason: str) -> None:
        """Stop delivering to a chat; its pending alerts are dropped, not lost silently."""
        with self.transaction() as c:
            c.execute(
                "UPDATE chats SET active = 0, inactive_reason = ? WHERE id = ?", (reason, chat_id)
            )
            c.execute(
                "UPDATE outbox SET status = 'dropped', last_error = ? "
                "WHERE chat_id = ? AND status IN ('pending', 'sending')",
                (reason, chat_id),
            )
            c.execute(
                "UPDATE digests SET status = 'dropped', last_error = ? "
                "WHERE chat_id = ? AND status IN ('pending', 'sending')",
                (reason, chat_id),
            )

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        """Follow a group that became a supergroup to its new id: its subscriptions,
        pending alerts, settings and the storylines it created (still its own)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE storylines SET created_by = ? WHERE created_by = ?", (new_id, old_id)
            )
            # Its feedback (and so its own exclusions) go with it.
            # A press the new id made on the same alert already wins.
            c.execute(
                "UPDATE feedback SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS ("
                "SELECT 1 FROM feedback n WHERE n.chat_id = ? "
                "AND n.storyline_id = feedback.storyline_id AND n.item_id = feedback.item_id)",
                (new_id, old_id, new_id),
            )
            # A preview sent before the move is pressed from the new id.
            c.execute("UPDATE pending_tracks SET chat_id = ? WHERE chat_id = ?",
                      (new_id, old_id))
            exists = c.execute("SELECT 1 FROM chats WHERE id = ?", (new_id,)).fetchone()
            if exists is None:
                c.execute("UPDATE chats SET id = ? WHERE id = ?", (new_id, old_id))
            else:
                c.execute(
                    "UPDATE chats SET tz = COALESCE(tz, (SELECT tz FROM chats WHERE id = ?)) "
                    "WHERE id = ?",
                    (old_id, new_id),
                )
                c.execute(
                    "INSERT OR IGNORE INTO subscriptions(chat_id, storyline_id, created_at) "
                    "SELECT ?, storyline_id, created_at FROM subscriptions WHERE chat_id = ?",
                    (new_id, old_id),
                )
                # Rows the new id holds already stay behind and go with the old chat.
                c.execute(
                    "UPDATE outbox SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS ("
                    "SELECT 1 FROM outbox n WHERE n.chat_id = ? "
                    "AND n.storyline_id = outbox.storyline_id AND n.item_id = outbox.item_id "
                    "AND n.kind = outbox.kind)",
                    (new_id, old_id, new_id),
                )
                c.execute(
                    "UPDATE digests SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS ("
                    "SELECT 1 FROM digests n WHERE n.chat_id = ? AND n.slot = digests.slot)",
                    (new_id, old_id, new_id),
                )
                c.execute(
                    "UPDATE subscriptions SET muted_until = (SELECT o.muted_until FROM "
                    "subscriptions o WHERE o.chat_id = ? AND o.storyline_id = "
                    "subscriptions.storyline_id) WHERE chat_id = ? AND muted_until IS NULL",
                    (old_id, new_id),
                )
                c.execute("DELETE FROM chats WHERE id = ?", (old_id,))

    def chat_tz(self, chat_id: int) -> str | None:
        rows = self._query("SELECT tz FROM chats WHERE id = ?", (chat_id,))
        return str(rows[0]["tz"]) if rows and rows[0]["tz"] else None

    def set_chat_tz(self, chat_id: int, tz: str | None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE chats SET tz = ? WHERE id = ?", (tz, chat_id))

    # -- delivery: instant, digests, quiet hours (issue 17) -------------------

    def chat_delivery(self, chat_id: int) -> Delivery:
        rows = self._query(
            "SELECT delivery, digest_times, quiet_hours, tz FROM chats WHERE id = ?", (chat_id,)
        )
        if not rows:
            return Delivery()
        r = rows[0]
        return Delivery.stored(r["delivery"], r["digest_times"], r["quiet_hours"], r["tz"])

    def set_chat_delivery(
        self, chat_id: int, mode: str, *, times: str | None = None, quiet: str | None = None
    ) -> None:
        """Set the mode, and the digest times or quiet hours when given (kept otherwise)."""
        with self.transaction() as c:
            c.execute(
                "UPDATE chats SET delivery = ?, digest_times = COALESCE(?, digest_times), "
                "quiet_hours = COALESCE(?, quiet_hours) WHERE id = ?",
                (mode, times, quiet, chat_id),
            )

    def set_digest_only(self, chat_id: int, storyline_id: int, on: bool) -> bool:
        """False if the chat does not follow the storyline."""
        with self.transaction() as c:
            return c.execute(
                "UPDATE subscriptions SET digest_only = ? WHERE chat_id = ? AND storyline_id = ?",
                (int(on), chat_id, storyline_id),
            ).rowcount > 0

    def digest_only_storylines(self, chat_id: int) -> list[tuple[int, str]]:
        rows = self._query(
            "SELECT s.id, s.title FROM subscriptions x JOIN storylines s ON s.id = x.storyline_id "
            "WHERE x.chat_id = ? AND x.digest_only = 1 AND s.active = 1 ORDER BY s.id",
            (chat_id,),
        )
        return [(int(r["id"]), str(r["title"])) for r in rows]

    def held_count(self, chat_id: int) -> int:
        """Alerts of the chat waiting for a digest not built yet."""
        rows = self._query(
            "SELECT COUNT(*) FROM outbox o WHERE o.chat_id = ? AND o.held = 1 "
            "AND o.digest_id IS NULL AND o.status = 'pending' AND o.kind = 'send'",
            (chat_id,),
        )
        return int(rows[0][0])

    def build_due_digests(self, now: datetime) -> list[int]:
        """Build the digests whose time has come (``storage.digests``); their ids."""
        # Looked at every second by the sender: the write lock only when one is due.
        candidates = self._query(digests.CANDIDATES)
        if not any(digests.due_slot(tuple(r), now) for r in candidates):
            return []
        with self.transaction() as c:
            return digests.build_due(c, now)

    def build_digest_now(self, chat_id: int, now: datetime) -> int | None:
        """Gather the chat's held alerts into a digest due now (the chat switched to
        instant: what waited comes at once, as one message)."""
        with self.transaction() as c:
            return digests.build_now(c, chat_id, now)

    def claim_due_digests(self, now: datetime, limit: int) -> list[DigestJob]:
        with self.transaction() as c:
            return digests.claim(c, now, limit)

    def digest_part_sent(
        self, digest_id: int, index: int, *, message_id: int | None, now: datetime
    ) -> None:
        with self.transaction() as c:
            digests.part_sent(c, digest_id, index, message_id, now)

    def release_digest(
        self, digest_id: int, *, not_before: datetime, error: str, counted: bool = False
    ) -> None:
        with self.transaction() as c:
            digests.release(c, digest_id, not_before, error, counted=counted)

    def fail_digest(self, digest_id: int, error: str) -> None:
        with self.transaction() as c:
            digests.fail(c, digest_id, error)

    def digest_counts(self) -> dict[str, int]:
        rows = self._query("SELECT status, COUNT(*) AS n FROM digests GROUP BY status")
        counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "dropped": 0}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    # -- timeline -------------------------------------------------------------

    def timeline(self, storyline_id: int) -> list[TimelineRow]:
        """The storyline's developments (matches that were not duplicates), newest
        first, each with the reports collapsed into it."""
        rows = self._query(
            "SELECT m.created_at AS matched_at, i.* FROM matches m JOIN items i "
            "ON i.id = m.item_id WHERE m.storyline_id = ? AND m.duplicate_of IS NULL "
            "ORDER BY COALESCE(i.published, m.created_at) DESC, i.id DESC",
            (storyline_id,),
        )
        dups = self._query(
            "SELECT m.duplicate_of, i.* FROM matches m JOIN items i ON i.id = m.item_id "
            "WHERE m.storyline_id = ? AND m.duplicate_of IS NOT NULL ORDER BY i.id",
            (storyline_id,),
        )
        collapsed: dict[int, list[Item]] = {}
        for d in dups:
            collapsed.setdefault(int(d["duplicate_of"]), []).append(self._item(d))
        return [
            TimelineRow(self._item(r), timestamp(r["matched_at"]),
                        tuple(collapsed.get(int(r["id"]), ())))
            for r in rows
        ]

    def chat_figures(self, chat_id: int) -> ChatFigures:
        rows = self._query(
            "SELECT "
            "(SELECT COUNT(*) FROM subscriptions x JOIN storylines s ON s.id = x.storyline_id "
            " WHERE x.chat_id = ? AND s.active = 1) AS following, "
            "(SELECT COUNT(*) FROM storylines WHERE created_by = ? AND active = 1) AS created, "
            "(SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND status = 'sent') AS sent, "
            "(SELECT COUNT(*) FROM outbox WHERE chat_id = ? "
            " AND status IN ('pending', 'sending')) AS pending, "
            "(SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND status = 'failed') AS failed",
            (chat_id,) * 5,
        )
        r = rows[0]
        return ChatFigures(r["following"], r["created"], r["sent"], r["pending"], r["failed"])

    def followers(self, storyline_id: int) -> list[int]:
        """The chats that follow a storyline (active or not), in id order."""
        rows = self._query(
            "SELECT chat_id FROM subscriptions WHERE storyline_id = ? ORDER BY chat_id",
            (storyline_id,),
        )
        return [int(r["chat_id"]) for r in rows]

    def subscribe(self, chat_id: int, storyline_id: int, *, now: datetime) -> bool:
        """True if newly subscribed, False if it already was."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO subscriptions(chat_id, storyline_id, created_at) "
                "VALUES (?, ?, ?)",
                (chat_id, storyline_id, _ts(now)),
            )
            return cur.rowcount > 0

    def unsubscribe(self, chat_id: int, storyline_id: int) -> bool:
        """Stop following; alerts of that storyline not yet sent to the chat are dropped."""
        with self.transaction() as c:
            cur = c.execute(
                "DELETE FROM subscriptions WHERE chat_id = ? AND storyline_id = ?",
                (chat_id, storyline_id),
            )
            c.execute(
                "UPDATE outbox SET status = 'dropped', last_error = 'unsubscribed' "
                "WHERE chat_id = ? AND storyline_id = ? AND status = 'pending'",
                (chat_id, storyline_id),
            )
            return cur.rowcount > 0

    # -- outbox -------------------------------------------------------------

    # Everything rendering needs about an outbox row; callers add WHERE/ORDER.
    _ENTRY_SELECT = (
        "SELECT o.id, o.chat_id, o.kind, o.attempts, o.storyline_id, o.parent_id, o.item_id, "
        "o.message_id, o.summary_count, o.created_at AS queued_at, "
        "s.title AS storyline_title, i.key, i.title, i.summary, i.link, i.published, "
        "i.source, i.feed_id, m.score, m.reason, p.message_id AS parent_message_id, "
        "ch.tz AS tz "
        "FROM outbox o JOIN storylines s ON s.id = o.storyline_id "
        "JOIN items i ON i.id = o.item_id "
        "JOIN matches m ON m.item_id = o.item_id AND m.storyline_id = o.storyline_id "
        "JOIN chats ch ON ch.id = o.chat_id "
        "LEFT JOIN outbox p ON p.id = o.parent_id "
    )

    @classmethod
    def _entry(cls, r: Row, *, attempts: int) -> OutboxEntry:
        return OutboxEntry(
            id=r["id"],
            chat_id=r["chat_id"],
            kind=r["kind"],
            attempts=attempts,
            storyline_id=r["storyline_id"],
            storyline_title=r["storyline_title"],
            item=cls._item(r),
            score=r["score"],
            reason=r["reason"],
            parent_message_id=r["parent_message_id"],
            parent_id=r["parent_id"],
            item_id=r["item_id"],
            message_id=r["message_id"],
            tz=r["tz"],
            summary_count=r["summary_count"],
            queued_at=_dt(r["queued_at"]),
        )

    # A row the sender may hand out: still wanted, and (for an edit) its parent settled.
    _CLAIMABLE = (
        "o.status = 'pending' AND o.held = 0 AND ch.active = 1 AND s.active = 1 "
        "AND (o.kind = 'send' OR p.status IN ('sent', 'failed', 'dropped')) "
    )

    def claim_due_alerts(self, now: datetime, limit: int) -> list[OutboxEntry]:
        """Mark up to ``limit`` due alerts as being sent and return them, oldest first.

        An edit waits until its parent alert was sent (it needs the message id).
        Alerts of a chat that blocked the bot, or of a storyline that was
        removed, are never handed out (they were dropped when that happened).

        The rows of one chat, item and kind (the item matched several storylines
        the chat follows) go out as ONE message, so they are claimed together:
        the siblings of every row taken are taken too, even past ``limit``.
        """
        with self.transaction() as c:
            c.row_factory = sqlite3.Row
            lock = "" if self.engine == "sqlite" else " FOR UPDATE OF o SKIP LOCKED"
            try:
                rows = c.execute(
                    self._ENTRY_SELECT + "WHERE " + self._CLAIMABLE
                    + "AND (o.not_before IS NULL OR o.not_before <= ?) ORDER BY o.id LIMIT ?"
                    + lock,
                    (_ts(now), limit),
                ).fetchall()
                taken = {r["id"] for r in rows}
                for chat_id, item_id, kind in {(r["chat_id"], r["item_id"], r["kind"])
                                               for r in rows}:
                    # Siblings share their status and not_before (every write below
                    # treats a message's rows together), so they are due as well.
                    siblings = c.execute(
                        self._ENTRY_SELECT + "WHERE " + self._CLAIMABLE
                        + "AND o.chat_id = ? AND o.item_id = ? AND o.kind = ?" + lock,
                        (chat_id, item_id, kind),
                    ).fetchall()
                    rows.extend(r for r in siblings if r["id"] not in taken)
                    taken.update(r["id"] for r in siblings)
                rows.sort(key=lambda r: int(r["id"]))
                c.executemany(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1, "
                    "claimed_at = ? WHERE id = ?",
                    [(_ts(now), r["id"]) for r in rows],
                )
            finally:
                c.row_factory = None
        return [self._entry(r, attempts=r["attempts"] + 1) for r in rows]

    def outbox_entry(self, outbox_id: int) -> OutboxEntry | None:
        """One outbox row, whatever its status: the sender redraws a parent
        alert from it when an 'edit' row adds "+N more" to its message."""
        rows = self._query(self._ENTRY_SELECT + "WHERE o.id = ?", (outbox_id,))
        return self._entry(rows[0], attempts=rows[0]["attempts"]) if rows else None

    def message_rows(self, outbox_id: int) -> list[OutboxEntry]:
        """The rows delivered by the same message as ``outbox_id`` (itself included),
        oldest first; just that row if it has no message; [] if there is no such row.

        An edit redraws its parent's whole message: every storyline it named."""
        rows = self._query(
            self._ENTRY_SELECT + "JOIN outbox x ON x.id = ? WHERE o.id = x.id "
            "OR (x.message_id IS NOT NULL AND o.message_id = x.message_id "
            "AND o.chat_id = x.chat_id AND o.item_id = x.item_id AND o.kind = x.kind) "
            "ORDER BY o.id",
            (outbox_id,),
        )
        return [self._entry(r, attempts=r["attempts"]) for r in rows]

    def duplicates_of(self, outbox_ids: int | Sequence[int]) -> list[Item]:
        """Items collapsed into the alert ``outbox_ids`` (its edits), oldest first,
        each once (one message may carry several rows that absorbed the same item)."""
        ids = _ids(outbox_ids)
        rows = self._query(
            "SELECT i.*, MIN(o.id) AS first FROM outbox o JOIN items i ON i.id = o.item_id "  # noqa: S608
            f"WHERE o.parent_id IN ({_marks(ids)}) AND o.kind = 'edit' "
            "GROUP BY i.id ORDER BY first",
            ids,
        )
        return [self._item(r) for r in rows]

    # The writes below take one id or the ids of the rows one message carries,
    # and change them in one transaction: a message is sent, retried or failed whole.

    def mark_sent(
        self, outbox_id: int | Sequence[int], *, now: datetime, message_id: int | None
    ) -> None:
        ids = _ids(outbox_id)
        with self.transaction() as c:
            c.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, message_id = ?, last_error = NULL "  # noqa: S608
                f"WHERE id IN ({_marks(ids)})",
                (_ts(now), message_id, *ids),
            )

    def mark_retry(
        self, outbox_id: int | Sequence[int], *, not_before: datetime, error: str
    ) -> None:
        ids = _ids(outbox_id)
        with self.transaction() as c:
            c.execute(
                "UPDATE outbox SET status = 'pending', not_before = ?, last_error = ? "  # noqa: S608
                f"WHERE id IN ({_marks(ids)}) AND status = 'sending'",
                (_ts(not_before), error, *ids),
            )

    def mark_failed(self, outbox_id: int | Sequence[int], error: str) -> None:
        ids = _ids(outbox_id)
        with self.transaction() as c:
            c.execute(
                f"UPDATE outbox SET status = 'failed', last_error = ? WHERE id IN ({_marks(ids)})",  # noqa: S608
                (error, *ids),
            )

    def recover_in_flight(self) -> int:
        """After a crash: alerts left 'sending' go back to pending; returns how many.

        Such an alert may or may not have reached Telegram; resending risks one
        duplicate, dropping it risks a loss, and a loss is worse for an alert bot.
        """
        with self.transaction() as c:
            return c.execute(
                "UPDATE outbox SET status = 'pending' WHERE status = 'sending'"
            ).rowcount + digests.recover(c, None, None)  # all of them: none is in flight

    def recover_expired_claims(
        self, now: datetime, lease: timedelta, *, keep: Collection[int] = (),
        keep_digests: Collection[int] = (),
    ) -> int:
        """Claims older than ``lease`` go back to pending, except the ``keep`` ids
        (sends still in flight in this process); returns how many.

        A claim outlives its sender only when writing the outcome failed (a lock
        held past every retry, a full disk): recovering it while running, not
        only at the next start, keeps such alerts from waiting for a restart.
        """
        cutoff = _ts(now - lease)
        with self.transaction() as c:
            rows = c.execute(
                "SELECT id FROM outbox WHERE status = 'sending' "
                "AND (claimed_at IS NULL OR claimed_at <= ?)",
                (cutoff,),
            ).fetchall()
            expired = [(int(r[0]),) for r in rows if int(r[0]) not in keep]
            c.executemany(
                "UPDATE outbox SET status = 'pending', claimed_at = NULL, "
                "last_error = 'claim expired; sending again' WHERE id = ? AND status = 'sending'",
                expired,
            )
            # Digests are sent by one task each, which writes every outcome itself.
            stale = digests.recover(c, now, lease, keep=keep_digests)
        return len(expired) + stale

    def outbox_counts(self) -> dict[str, int]:
        rows = self._query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "dropped": 0}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    def release_claim(
        self, outbox_id: int | Sequence[int], *, not_before: datetime, error: str
    ) -> None:
        """Give back a claimed alert that was not really attempted (held by our own
        rate limiter, refused with 429, or cut short by shutdown): pending again,
        and the claim's attempt is not counted, so a long 429 storm never pushes
        an alert over the failure limit."""
        ids = _ids(outbox_id)
        with self.transaction() as c:
            c.execute(
                "UPDATE outbox SET status = 'pending', not_before = ?, last_error = ?, "  # noqa: S608
                f"attempts = MAX(attempts - 1, 0) WHERE id IN ({_marks(ids)}) "
                "AND status = 'sending'",
                (_ts(not_before), error, *ids),
            )

    # -- steering: feedback on alerts, mutes, sensitivity (issue 15) ---------------

    def record_feedback(
        self, *, storyline_id: int, chat_id: int, user_id: int | None, item_id: int | None,
        verdict: str, scope: str, title: str, summary: str, now: datetime,
    ) -> None:
        """Store a 👍 / 👎 on an alert; a later press on the same alert replaces it."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO feedback(storyline_id, chat_id, user_id, item_id, verdict, scope, "
                "title, summary, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(storyline_id, chat_id, item_id) DO UPDATE SET "
                "user_id = excluded.user_id, verdict = excluded.verdict, scope = excluded.scope, "
                "created_at = excluded.created_at",
                (storyline_id, chat_id, user_id, item_id, verdict, scope, title, summary,
                 _ts(now)),
            )

    def feedback_rows(self, storyline_id: int | None = None) -> list[Row]:
        """Feedback on active storylines (who, when, on what), oldest first; at most the
        newest FEEDBACK_KEPT per storyline, chat scope and verdict (more would not
        change much; retention prunes the rest)."""
        return self._query(
            "SELECT * FROM (SELECT f.*, (SELECT m.score FROM matches m WHERE m.item_id = "  # noqa: S608
            f"f.item_id AND m.storyline_id = f.storyline_id) AS score, {FEEDBACK_RANK} "
            "AS n FROM feedback f JOIN storylines s ON s.id = f.storyline_id AND s.active = 1 "
            "WHERE ? IS NULL OR f.storyline_id = ?) AS ranked "
            f"WHERE n <= {FEEDBACK_KEPT} ORDER BY id",
            (storyline_id, storyline_id),
        )

    def alert_marks(
        self, chat_id: int, item_id: int, storyline_ids: Sequence[int], now: datetime
    ) -> dict[int, tuple[str | None, bool, bool]]:
        """Per storyline of an alert: (this chat's verdict on the item, muted now,
        followed), for drawing its buttons."""
        out: dict[int, tuple[str | None, bool, bool]] = {}
        for sid in dict.fromkeys(storyline_ids):
            verdict = self._query(
                "SELECT verdict FROM feedback WHERE storyline_id = ? AND chat_id = ? "
                "AND item_id = ?", (sid, chat_id, item_id),
            )
            sub = self._query(
                "SELECT muted_until FROM subscriptions WHERE chat_id = ? AND storyline_id = ?",
                (chat_id, sid),
            )
            until = as_datetime(sub[0]["muted_until"]) if sub else None
            muted = until is not None and until > now
            out[sid] = (verdict[0]["verdict"] if verdict else None, muted, bool(sub))
        return out

    def set_mute(self, chat_id: int, storyline_id: int, until: datetime | None) -> bool:
        """Mute (``until`` a time) or unmute (None) a storyline for a chat; False if
        the chat does not follow it."""
        with self.transaction() as c:
            return c.execute(
                "UPDATE subscriptions SET muted_until = ? WHERE chat_id = ? AND storyline_id = ?",
                (_ts(until), chat_id, storyline_id),
            ).rowcount > 0

    def mutes(self, chat_id: int, now: datetime) -> dict[int, datetime]:
        """The storylines this chat has muted now, with until when."""
        rows = self._query(
            "SELECT storyline_id, muted_until FROM subscriptions WHERE chat_id = ? "
            "AND muted_until > ?", (chat_id, _ts(now)),
        )
        return {int(r["storyline_id"]): timestamp(r["muted_until"]) for r in rows}

    def set_sensitivity(self, storyline_id: int, value: str) -> bool:
        with self.transaction() as c:
            return c.execute(
                "UPDATE storylines SET sensitivity = ? WHERE id = ? AND active = 1",
                (value, storyline_id),
            ).rowcount > 0

    def sensitivities(self) -> dict[int, str]:
        """Active storylines whose sensitivity is not "normal"."""
        rows = self._query(
            "SELECT id, sensitivity FROM storylines WHERE active = 1 AND sensitivity != 'normal'"
        )
        return {int(r["id"]): str(r["sensitivity"]) for r in rows}

    def add_pending_track(
        self, *, chat_id: int, user_id: int | None, title: str, now: datetime
    ) -> int:
        """Keep a previewed ``/track`` title until the chat decides; returns the token
        its buttons carry (random: a decided preview's token names no later one).
        A chat keeps its newest PENDING_PER_CHAT previews open (a flood of /track
        leaves no more behind)."""
        token = secrets.randbelow(2**53 - 1) + 1
        with self.transaction() as c:
            c.execute(
                "INSERT INTO pending_tracks(token, chat_id, user_id, title, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (token, chat_id, user_id, title, _ts(now)),
            )
            c.execute(
                "DELETE FROM pending_tracks WHERE chat_id = ? AND id NOT IN (SELECT id FROM "
                "pending_tracks WHERE chat_id = ? ORDER BY id DESC LIMIT ?)",
                (chat_id, chat_id, PENDING_PER_CHAT),
            )
        return token

    def take_pending_track(self, token: int, chat_id: int) -> str | None:
        """The title of a preview, removed as it is taken; None if there is none for
        this chat (already decided, pruned, or named by another chat's forged press)."""
        with self.transaction() as c:
            row = c.execute(
                "DELETE FROM pending_tracks WHERE token = ? AND chat_id = ? RETURNING title",
                (token, chat_id),
            ).fetchone()
        return None if row is None else str(row[0])

    def items_since(self, since: datetime, limit: int) -> list[Item]:
        """Stored items first seen since ``since``, oldest first (the /track preview)."""
        rows = self._query(
            "SELECT * FROM (SELECT * FROM items WHERE first_seen >= ? ORDER BY id DESC LIMIT ?) "
            "AS newest ORDER BY id", (_ts(since), limit),
        )
        return [self._item(r) for r in rows]
