"""httpcore's network backend written on asyncio's transports, without anyio.

httpcore's default backend on asyncio goes through anyio: each read and write opens a
cancel scope for its timeout, and each send first yields to the event loop once more,
work a pass of thousands of small answers pays for on every one (issue 18; the
measured difference is in docs/performance.md). This backend does the same job with
one asyncio protocol per connection and ``asyncio.timeout``.

As with anyio, a connection reads from its socket only while someone awaits
:meth:`AsyncioStream.read`: an idle pooled connection leaves whatever its server sends
(an early close, above all) in the socket, where the guard's one-``poll()`` idle check
(``bot.fetching.guard``) sees it.

Errors are httpcore's: ``ConnectError``/``ConnectTimeout``, ``ReadError``/
``ReadTimeout``, ``WriteError``/``WriteTimeout``, each raised ``from`` the OS or TLS
error, so callers can still tell a rejected certificate from a refused connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import httpcore


class _Protocol(asyncio.Protocol):
    """Collects what one connection receives; reading is resumed only on demand."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.eof = False
        self.error: BaseException | None = None
        self.readable: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        assert self.transport is not None
        self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake_reader()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self.readable is not None and not self.readable.done():
            self.readable.set_result(None)

    def _wake_writer(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)


def _closed_error(protocol: _Protocol) -> str:
    return str(protocol.error) if protocol.error is not None else "connection closed"


async def _woken(
    waiter: asyncio.Future[None],
    timeout: float | None,  # noqa: ASYNC109 (httpcore's per-operation timeout)
    expired: type[httpcore.TimeoutException],
    doing: str,
) -> None:
    """Wait until the protocol wakes ``waiter``, or raise ``expired`` after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            await waiter
    except TimeoutError:
        raise expired(f"timed out {doing}") from None


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore wants it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            protocol.readable = waiter
            self._transport.resume_reading()
            try:
                await _woken(waiter, timeout, httpcore.ReadTimeout, "reading")
            finally:
                protocol.readable = None
                if not self._transport.is_closing():
                    self._transport.pause_reading()
        if protocol.chunks:
            chunk = protocol.chunks.popleft()
            if len(chunk) > max_bytes:
                protocol.chunks.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            return chunk
        if protocol.error is not None:
            raise httpcore.ReadError(_closed_error(protocol)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing() or protocol.error is not None:
            raise httpcore.WriteError(_closed_error(protocol)) from protocol.error
        self._transport.write(buffer)
        if not protocol.write_paused:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        protocol.writable = waiter
        try:
            await _woken(waiter, timeout, httpcore.WriteTimeout, "writing")
        finally:
            protocol.writable = None
        if protocol.write_paused or protocol.error is not None:
            raise httpcore.WriteError(_closed_error(protocol)) from protocol.error

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        self._protocol.transport = transport
        transport.pause_reading()
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # What this stream has taken in; what waits in the socket is answered by
            # the guard's wrapper (guard._IdleCheckedStream), which polls it.
            return bool(self._protocol.chunks) or self._protocol.eof
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections; only TCP (the guard refuses the rest)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
