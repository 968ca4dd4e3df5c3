"""Shared pieces of the reliability suite ("hostile world" tests).

- :class:`ConnectionCounter`: a TCP listener on 127.0.0.1 that counts the
  connections it accepts (and answers nothing). A forbidden target, a proxy
  variable and an external entity all point at one, so "0 connections" is
  counted at the socket, not inferred.
- ``connect_log``: wraps httpcore's AnyIO network backend (the one the guarded
  fetcher finally connects through) to record every connect attempt. As a
  safety net it refuses, without opening a socket, any address outside
  127.0.0.0/8: no test can reach another network even if the guard failed.
- ``table``: each test adds the row it proves to the reliability table; the
  rows measured in this run are printed at the end of the session
  (``docs/reliability.md`` names the test behind each row).
- :func:`make_settings`: Settings for a throwaway data dir.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import pytest

from bot.fetching.streams import AsyncioBackend
from bot.settings import EnvSettings, FetchOptions, FileConfig, LimitOptions, Settings

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpora" / "feedparser"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class ConnectionCounter:
    """A listener on 127.0.0.1 that accepts, counts and closes connections."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="conn-counter", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def listener() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    try:
        yield counter
    finally:
        counter.close()


@dataclass
class ConnectLog:
    """Every TCP connect the HTTP stack attempted: (host, port)."""

    attempts: list[tuple[str, int]] = field(default_factory=list)

    def to(self, *, except_port: int | None = None) -> list[tuple[str, int]]:
        return [a for a in self.attempts if a[1] != except_port]


@pytest.fixture
def connect_log(monkeypatch: pytest.MonkeyPatch) -> ConnectLog:
    log = ConnectLog()
    original = AsyncioBackend.connect_tcp

    async def counting_connect(
        self: AsyncioBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        log.attempts.append((host, port))
        try:
            inside = ipaddress.ip_address(host) in LOOPBACK
        except ValueError:
            inside = False
        if not inside:
            raise httpcore.ConnectError(f"test safety net: no connection to {host} outside 127/8")
        return await original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", counting_connect)
    return log


def make_settings(
    data_dir: Path,
    *,
    interval: float = 60.0,
    fetch: FetchOptions | None = None,
    admins: Iterable[int] = (),
    limits: LimitOptions | None = None,
    allow_private: bool = True,
) -> Settings:
    env = EnvSettings.model_validate({
        "STORYWATCH_DATA_DIR": str(data_dir),
        "STORYWATCH_POLL_INTERVAL": interval,
        "STORYWATCH_ALLOW_PRIVATE_NETWORKS": allow_private,
        "STORYWATCH_ADMINS": ",".join(str(a) for a in admins),
    })
    return Settings(
        env=env,
        file=FileConfig(
            fetch=fetch or FetchOptions(), limits=limits or LimitOptions(), log_level="WARNING"
        ),
    )


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: str
    tried: str
    count: int
    outcome: str
    test: str


_ROWS: list[Row] = []


class Table:
    def __init__(self, test: str) -> None:
        self._test = test

    def row(self, case: str, tried: str, count: int, outcome: str) -> None:
        _ROWS.append(Row(case, tried, count, outcome, self._test))


@pytest.fixture
def table(request: pytest.FixtureRequest) -> Table:
    return Table(request.node.nodeid.split("::", 1)[-1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("reliability table (measured in this run)")
    terminalreporter.write_line("| case | what was tried | how many | outcome | test |")
    terminalreporter.write_line("| --- | --- | --- | --- | --- |")
    for r in _ROWS:
        terminalreporter.write_line(
            f"| {r.case} | {r.tried} | {r.count} | {r.outcome} | `{r.test}` |"
        )
