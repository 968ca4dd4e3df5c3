"""Loopback ports for tests: one nothing listens on (a refused connection), or one
free for a server the test starts."""

from __future__ import annotations

import socket


def unused_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound, read, released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
