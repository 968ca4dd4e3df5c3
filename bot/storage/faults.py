"""SQLite's failures turned into errors an operator can act on.

sqlite3 raises ``OperationalError`` for a held lock, a full disk and a damaged
file alike; callers above the repository must be able to tell them apart (a
lock is waited out, a full disk is reported as such, never as an internal
error) and the message must say which database and what to do. Pure: no I/O.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.errors import ConfigError, StorageBusyError, StorageError, StorageFullError

# Fragments of SQLite's own messages (sqlite3_errstr), lower case.
_BUSY = ("database is locked", "database is busy", "database table is locked")
_FULL = ("database or disk is full",)
_CORRUPT = ("malformed", "file is not a database", "disk i/o error")


def is_fault(exc: BaseException) -> bool:
    """True for a failure of the database itself (lock, disk, damage), as opposed
    to a constraint or a programming error that callers handle or that is our bug."""
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


def is_busy(exc: BaseException) -> bool:
    """True for a lock another connection held past our busy timeout."""
    return isinstance(exc, sqlite3.OperationalError) and any(
        s in str(exc).lower() for s in _BUSY
    )


def translate(exc: sqlite3.Error, path: Path, *, waited: float | None = None) -> StorageError:
    """The StorageError that says what ``exc`` means for the database at ``path``."""
    text = str(exc).lower()
    if any(s in text for s in _FULL):
        return StorageFullError(
            f"database or disk is full: cannot write {path} ({exc}); free disk space "
            "(or lower the retention settings) and the bot carries on"
        )
    if any(s in text for s in _BUSY):
        held = f" for {waited:.0f} s" if waited is not None else ""
        return StorageBusyError(
            f"database {path} is locked by another process{held} ({exc}); "
            "find what holds it (a backup, an sqlite3 shell, a second bot) and end it"
        )
    if any(s in text for s in _CORRUPT):
        return StorageError(
            f"database {path} is damaged ({exc}); stop the bot and restore a backup"
        )
    return StorageError(f"database {path}: {type(exc).__name__}: {exc}")


def corrupt_at_start(path: Path, verdict: str) -> ConfigError:
    """The refusal to start on a database whose quick_check failed."""
    first = verdict.splitlines()[0] if verdict else "no answer"
    return ConfigError(
        f"database {path} is corrupt (PRAGMA quick_check: {first[:200]}); "
        "stop here and restore a backup; the bot will not write to it"
    )


def empty_file(path: Path) -> ConfigError:
    """The refusal to reuse a 0-byte file where a database was expected."""
    return ConfigError(
        f"database {path} is an empty (0-byte) file: if it held your chats and "
        "subscriptions, they are gone from it; restore a backup, or delete the file "
        "to start afresh. Storywatch will not silently create an empty database there"
    )
