"""Both database engines for tests: SQLite in the test's directory, PostgreSQL in a
fresh schema of the local server (skipped with the reason when none is reachable).

``STORYWATCH_TEST_POSTGRES_URL`` names the server; by default the project
machines' one, 127.0.0.1:5432 database ``test`` with trust authentication.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.storage.repository import Database

ENGINES = ("sqlite", "postgres")

POSTGRES_URL = os.environ.get(
    "STORYWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

_unreachable: str | None = None


def postgres_or_skip() -> str:
    """The server URL, or skip the test saying why PostgreSQL cannot be used."""
    global _unreachable
    if _unreachable is None:
        try:
            import psycopg
        except ImportError:
            _unreachable = "psycopg is not installed (pip install -e '.[test]')"
        else:
            try:
                psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
                _unreachable = ""
            except psycopg.Error as exc:
                _unreachable = (f"no PostgreSQL reachable at {POSTGRES_URL} "
                                f"({type(exc).__name__}); set STORYWATCH_TEST_POSTGRES_URL")
    if _unreachable:
        pytest.skip(_unreachable)
    return POSTGRES_URL


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema, dropped with everything in it afterwards; yields its
    URL (the schema first on the search path)."""
    import psycopg

    url = postgres_or_skip()
    name = "sw_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def open_engine(engine: str, directory: Path) -> Iterator[Database]:
    """A migrated, empty database of ``engine``."""
    if engine == "sqlite":
        db = Database.open(directory / "data" / "storywatch.db")
        try:
            yield db
        finally:
            db.close()
        return
    with fresh_schema() as url:
        db = Database.open_postgres(url)
        try:
            yield db
        finally:
            db.close()


def integrity_errors() -> tuple[type[Exception], ...]:
    """What a broken constraint raises on either engine."""
    import sqlite3

    try:
        import psycopg
    except ImportError:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


@contextmanager
def database_env(engine: str) -> Iterator[dict[str, str]]:
    """The environment a ``storywatch`` process needs for ``engine``: nothing for
    SQLite (its file in STORYWATCH_DATA_DIR), a fresh schema's URL for PostgreSQL."""
    if engine == "sqlite":
        yield {}
        return
    with fresh_schema() as url:
        yield {"STORYWATCH_DATABASE_URL": url}


def open_for_env(env: dict[str, str], data_dir: Path) -> Database:
    """The database a process started with ``env`` uses."""
    url = env.get("STORYWATCH_DATABASE_URL")
    return Database.open_postgres(url) if url else Database.open(data_dir / "storywatch.db")
