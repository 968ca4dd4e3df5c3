"""Hold a SQLite write lock from another process.

``python -m tests.support.lock_holder DB SECONDS``

Prints ``locked`` once ``BEGIN IMMEDIATE`` succeeded, holds the lock for
SECONDS (or until a line arrives on stdin), then rolls back and exits. Tests
use it to show what the bot does while another process (a backup, an sqlite3
shell) holds its database.
"""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
from pathlib import Path


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    select.select([sys.stdin], [], [], seconds)
    conn.execute("ROLLBACK")
    conn.close()


class LockHolder:
    """The holder process, started and waited for from a test."""

    def __init__(self, db_path: Path, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.lock_holder", str(db_path), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            self.proc.kill()
            raise RuntimeError(f"lock holder did not take the lock: {line!r}")

    def release(self) -> None:
        """Let go now (and wait for the process to end)."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
