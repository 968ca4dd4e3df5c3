"""How a failed send's transport error is read: never sent, or perhaps delivered.

The errors are the real ones: python-telegram-bot's ``Bot`` and ``HTTPXRequest``
calling sockets on 127.0.0.1 that refuse, never answer, or hang up.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut
from telegram.request import HTTPXRequest

from bot.delivery.transport import may_have_arrived, waited_for_connection
from tests.conftest import TOKEN
from tests.support.ports import unused_port


class Silent:
    """A port that takes connections and never answers; ``connected`` is set at the first."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A port that reads a request and closes the connection without an answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with conn:
                # Read the whole request (until it pauses) before hanging up, so the
                # client's own write cannot be the one that fails.
                conn.settimeout(0.3)
                try:
                    while conn.recv(65536):
                        pass
                except TimeoutError:
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield int(s.getsockname()[1])
        thread.join(timeout=10)


async def _send_error(port: int, timeout: float) -> NetworkError:
    bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot")
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(1, "hello", read_timeout=timeout, write_timeout=timeout)
    await bot.shutdown()
    return caught.value


async def test_a_refused_connection_sent_nothing() -> None:
    exc = await _send_error(unused_port(), 10)
    assert not may_have_arrived(exc) and not waited_for_connection(exc)


async def test_a_send_without_an_answer_may_have_arrived(silent: Silent) -> None:
    exc = await _send_error(silent.port, 0.5)
    assert isinstance(exc, TimedOut)
    assert may_have_arrived(exc) and not waited_for_connection(exc)


async def test_a_connection_dropped_after_the_request_may_have_arrived(hangs_up: int) -> None:
    exc = await _send_error(hangs_up, 10)  # it hangs up first
    assert not isinstance(exc, TimedOut)
    assert may_have_arrived(exc) and not waited_for_connection(exc)


async def test_a_send_that_waited_for_a_busy_connection_sent_nothing(silent: Silent) -> None:
    request = HTTPXRequest(connection_pool_size=1, pool_timeout=0.1)
    bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{silent.port}/bot", request=request)
    busy = asyncio.create_task(bot.send_message(1, "first", read_timeout=9, write_timeout=9))
    try:
        # The first send holds the only connection, waiting for its answer.
        assert await asyncio.to_thread(silent.connected.wait, 10)
        with pytest.raises(TimedOut) as caught:
            await bot.send_message(2, "second", read_timeout=9, write_timeout=9)
    finally:
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
        await bot.shutdown()
    assert waited_for_connection(caught.value)
    assert not may_have_arrived(caught.value)
