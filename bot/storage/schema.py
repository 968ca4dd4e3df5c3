"""The schema as an ordered list of migrations, for SQLite and PostgreSQL.

SQLite records its version in ``PRAGMA user_version``, PostgreSQL in the
``schema_version`` table; opening a database applies every migration above
that version, each in its own transaction. A migration, once released, is
never edited: changes go in a new one.

The migrations are written once, in SQLite's DDL, and rewritten for
PostgreSQL by ``storage.engine.ddl_to_postgres`` (identities, BIGINT,
timestamptz). This runner was extended rather than replaced by Alembic: the
list is appended to by several branches at once and ordered by position, and
one source for both engines keeps them from drifting apart.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bot.storage.engine import ddl_to_postgres

MIGRATIONS: tuple[str, ...] = (
    # 1: first release
    """
    CREATE TABLE feeds (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        title TEXT,
        added_at TEXT NOT NULL,
        added_by INTEGER,
        primed INTEGER NOT NULL DEFAULT 0,
        etag TEXT,
        last_modified TEXT,
        body_hash TEXT,
        next_check TEXT,
        consecutive_errors INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_ok TEXT,
        last_checked TEXT
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        feed_id INTEGER REFERENCES feeds(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        title TEXT NOT NULL,
        summary TEXT NOT NULL,
        link TEXT,
        published TEXT,
        source TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        UNIQUE (feed_id, key)
    );
    CREATE INDEX items_first_seen ON items(first_seen);
    CREATE TABLE storylines (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        seed_text TEXT NOT NULL DEFAULT '',
        aliases TEXT NOT NULL DEFAULT '[]',
        keywords TEXT NOT NULL DEFAULT '[]',
        shared INTEGER NOT NULL DEFAULT 0,
        slug TEXT UNIQUE,
        created_by INTEGER,
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL DEFAULT 'private',
        title TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        inactive_reason TEXT
    );
    CREATE TABLE subscriptions (
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
        storyline_id INTEGER NOT NULL REFERENCES storylines(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (chat_id, storyline_id)
    );
    CREATE TABLE matches (
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        storyline_id INTEGER NOT NULL REFERENCES storylines(id) ON DELETE CASCADE,
        score REAL NOT NULL,
        reason TEXT NOT NULL,
        duplicate_of INTEGER REFERENCES items(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (item_id, storyline_id)
    );
    CREATE INDEX matches_storyline_time ON matches(storyline_id, created_at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
        storyline_id INTEGER NOT NULL REFERENCES storylines(id) ON DELETE CASCADE,
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        kind TEXT NOT NULL DEFAULT 'send' CHECK (kind IN ('send', 'edit')),
        parent_id INTEGER REFERENCES outbox(id) ON DELETE CASCADE,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        message_id INTEGER,
        last_error TEXT,
        UNIQUE (chat_id, storyline_id, item_id, kind)
    );
    CREATE INDEX outbox_status ON outbox(status, not_before);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2 (issue 13): each chat's time zone for alert times (IANA name; NULL is UTC)
    """
    ALTER TABLE chats ADD COLUMN tz TEXT;
    """,
    # 3: a year unattended (issue 14): claim leases on the outbox, storm
    # summaries, retention (when an item was last in its feed), items recognised
    # by content when their GUIDs churn, the per-poll item cap, and the indexes
    # pruning and its cascades need.
    """
    ALTER TABLE outbox ADD COLUMN claimed_at TEXT;
    ALTER TABLE outbox ADD COLUMN summary_count INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_chat_storyline_time ON outbox(chat_id, storyline_id, created_at);
    CREATE INDEX outbox_item ON outbox(item_id);
    CREATE INDEX outbox_parent ON outbox(parent_id);
    CREATE INDEX outbox_created ON outbox(created_at);
    ALTER TABLE items ADD COLUMN last_seen TEXT;
    ALTER TABLE items ADD COLUMN content_hash TEXT;
    UPDATE items SET last_seen = first_seen;
    CREATE INDEX items_last_seen ON items(last_seen);
    CREATE INDEX items_content ON items(feed_id, content_hash);
    CREATE INDEX matches_created ON matches(created_at);
    CREATE INDEX matches_duplicate_of ON matches(duplicate_of);
    ALTER TABLE feeds ADD COLUMN items_seen_at TEXT;
    ALTER TABLE feeds ADD COLUMN items_capped INTEGER NOT NULL DEFAULT 0;
    """,
    # OPML import: a feed's title from the imported list stays (polls keep their hands off)
    """
    ALTER TABLE feeds ADD COLUMN title_kept INTEGER NOT NULL DEFAULT 0;
    """,
    # issue 17 (delivery per chat): a chat's delivery mode ('instant', 'digest' at
    # local times, 'quiet' hours), digest-only storylines, outbox rows held for a
    # digest, and the digests themselves (built once per slot, sent part by part).
    """
    ALTER TABLE chats ADD COLUMN delivery TEXT NOT NULL DEFAULT 'instant';
    ALTER TABLE chats ADD COLUMN digest_times TEXT;
    ALTER TABLE chats ADD COLUMN quiet_hours TEXT;
    ALTER TABLE subscriptions ADD COLUMN digest_only INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE digests (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
        slot TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dropped')),
        parts TEXT NOT NULL,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        message_ids TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before TEXT,
        claimed_at TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        UNIQUE (chat_id, slot)
    );
    CREATE INDEX digests_status ON digests(status, not_before);
    ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN digest_id INTEGER REFERENCES digests(id) ON DELETE SET NULL;
    CREATE INDEX outbox_held ON outbox(chat_id, created_at) WHERE held = 1 AND digest_id IS NULL;
    CREATE INDEX outbox_digest ON outbox(digest_id);
    """,
    # issue 15: alerts users can steer. Feedback from the buttons under alerts (the
    # item's text is kept, so the example outlives the item's retention), a chat's
    # mute of a storyline it follows, and each storyline's sensitivity.
    """
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        storyline_id INTEGER NOT NULL REFERENCES storylines(id) ON DELETE CASCADE,
        chat_id INTEGER NOT NULL,
        user_id INTEGER,
        item_id INTEGER REFERENCES items(id) ON DELETE SET NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('up', 'down')),
        scope TEXT NOT NULL CHECK (scope IN ('storyline', 'chat')),
        title TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX feedback_once ON feedback(storyline_id, chat_id, item_id);
    CREATE INDEX feedback_storyline ON feedback(storyline_id, id);
    ALTER TABLE subscriptions ADD COLUMN muted_until TEXT;
    ALTER TABLE storylines ADD COLUMN sensitivity TEXT NOT NULL DEFAULT 'normal';
    """,
    # Many workers (issue 16): a feed due for a poll is leased by one worker until
    # it is polled or the lease runs out; named leases elect one sender.
    """
    ALTER TABLE feeds ADD COLUMN leased_until TEXT;
    ALTER TABLE feeds ADD COLUMN leased_by TEXT;
    CREATE INDEX feeds_next_check ON feeds(next_check);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        leased_until TEXT NOT NULL
    );
    """,    # issue 15: `/track TITLE` previews first; the title waits here until the chat
    # presses Track it (or Cancel, or Follow #N instead). The preview's buttons name
    # this row by a random token (SQLite reuses the id of a deleted last row, so an
    # old preview's button could name a newer one), and a press counts only from the
    # chat that asked.
    """
    CREATE TABLE pending_tracks (
        id INTEGER PRIMARY KEY,
        token INTEGER NOT NULL UNIQUE,
        chat_id INTEGER NOT NULL,
        user_id INTEGER,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX pending_tracks_created ON pending_tracks(created_at);
    """,
)

LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version reached.

    Refuses a database written by a newer Storywatch rather than guessing.
    """
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > LATEST_VERSION:
        from bot.errors import ConfigError

        raise ConfigError(
            f"database schema version {current} is newer than this Storywatch "
            f"understands ({LATEST_VERSION}); upgrade Storywatch"
        )
    for version in range(current + 1, LATEST_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return LATEST_VERSION


def _statements(script: str) -> list[str]:
    # executescript() would commit implicitly; splitting keeps each migration atomic.
    return [s.strip() for s in script.split(";") if s.strip()]


# Serialises migrations of one PostgreSQL database between workers starting together.
_PG_MIGRATION_LOCK = 0x5709_0016


def migrate_postgres(conn: Any) -> int:
    """``migrate`` for PostgreSQL (a ``storage.engine.PgConn``): the version in
    ``schema_version``, each migration in its own transaction under an
    advisory lock so that workers starting together apply it once."""
    from bot.errors import ConfigError

    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
    while True:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > LATEST_VERSION:
                raise ConfigError(
                    f"database schema version {current} is newer than this Storywatch "
                    f"understands ({LATEST_VERSION}); upgrade Storywatch"
                )
            if current == LATEST_VERSION:
                conn.execute("COMMIT")
                return LATEST_VERSION
            for statement in _statements(ddl_to_postgres(MIGRATIONS[current])):
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (current + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
