"""A real HTTP feed server on 127.0.0.1 for integration and end-to-end tests.

Runs ``http.server`` in a background thread, so the code under test talks real HTTP
over a real socket. Routes are set (and changed) at runtime; every request is logged.

    from tests.support.feed_server import FeedServer, Route, rss_document

    with FeedServer() as server:
        server.set_route("/feed.xml", Route(body=rss_document("News", [...]), etag='"v1"'))
        url = server.url("/feed.xml")            # http://127.0.0.1:<port>/feed.xml
        ...
        assert server.requests_for("/feed.xml")[0].headers["user-agent"]

``peak_concurrency`` reports the most requests served at once (concurrency limits).
What a route can do: any status and headers; ETag / Last-Modified with automatic 304
answers to matching conditional requests; redirects (``server.redirect``); a body
streamed from a generator (huge bodies without holding them in memory); a slow trickle
(``delay`` seconds before each chunk); gzip (``gzip=True``, or a ready-made
``gzip_bomb``). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import gzip as gzip_module
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape

Body = bytes | Callable[[], Iterable[bytes]]

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@dataclass
class Route:
    """What the server answers on one path.

    ``body`` is bytes, or a zero-argument callable returning an iterable of chunks
    (streamed; without ``content_length`` the connection is closed to end the body).
    ``delay`` sleeps before each chunk (bytes bodies are sent in ``chunk_size`` pieces),
    which makes a trickling server. ``conditional=False`` ignores If-None-Match and
    If-Modified-Since, like many real servers.
    """

    body: Body = b""
    status: int = 200
    content_type: str | None = RSS_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    conditional: bool = True
    gzip: bool = False
    delay: float = 0.0
    chunk_size: int = 64 * 1024
    content_length: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received; header names lowercased."""

    method: str
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.time)  # when it arrived (wall clock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: a pass opening dozens of connections at once
    # had some handshakes dropped and retried by the kernel a second (or three) later,
    # enough to run a test's short fetch deadline out on a slow machine.
    request_queue_size = 128

    def __init__(self, owner: FeedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        tls = self.owner.tls
        if tls is None:
            return sock, address
        # The handshake runs in the handler's thread (on its first read), so a client
        # that never completes one cannot stall the accepting thread.
        return tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up (deadlines, refused redirects, TLS probes) are expected.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean; the request log is the record

    def setup(self) -> None:
        super().setup()
        self.server.owner._connected()

    def do_GET(self) -> None:
        with self.server.owner._in_flight():
            self._answer()

    def do_HEAD(self) -> None:
        with self.server.owner._in_flight():
            self._answer(head=True)

    def _answer(self, *, head: bool = False) -> None:
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(RecordedRequest(self.command, self.path, headers))
        route = owner._lookup(self.path)
        if route is None:
            self._send_simple(404, b"not found\n")
            return
        if route.conditional and _not_modified(route, headers):
            self.send_response(304)
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(route.status)
        if route.content_type:
            self.send_header("Content-Type", route.content_type)
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.last_modified:
            self.send_header("Last-Modified", route.last_modified)
        for name, value in route.headers.items():
            self.send_header(name, value)
        chunks: Iterable[bytes]
        length: int | None
        if isinstance(route.body, bytes):
            data = gzip_module.compress(route.body) if route.gzip else route.body
            if route.gzip:
                self.send_header("Content-Encoding", "gzip")
            length = len(data) if route.content_length is None else route.content_length
            chunks = (data[i : i + route.chunk_size] for i in range(0, len(data), route.chunk_size))
        else:
            length = route.content_length
            chunks = route.body()
        if length is None:
            self.close_connection = True
            self.send_header("Connection", "close")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        sent = 0
        try:
            for chunk in chunks:
                if route.delay and owner._stopping.wait(route.delay):
                    self.close_connection = True
                    return  # server stopping: abandon the trickle
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it should
        if length is not None and sent != length:
            # A body shorter than its Content-Length: close, as a dying server would.
            self.close_connection = True

    def _send_simple(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _not_modified(route: Route, headers: dict[str, str]) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None and route.etag:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or route.etag in tags
    ims = headers.get("if-modified-since")
    return ims is not None and route.last_modified is not None and ims == route.last_modified


class FeedServer:
    """A threaded HTTP server on 127.0.0.1 with routes settable at runtime.

    ``start()``/``stop()`` or use as a context manager. Thread-safe: tests may change
    routes while requests are in flight.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        #: Serve HTTPS with this server-side context instead of plain HTTP.
        self.tls = tls
        self._routes: dict[str, Route] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active = 0
        self._peak = 0
        self._connections = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FeedServer:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        # A short poll interval keeps stop() fast (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="feed-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FeedServer is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return self.url("")

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        """Full URL of ``path``; ``host`` lets tests use a name their resolver maps here."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    # routes
    def set_route(self, path: str, route: Route) -> None:
        """Serve ``route`` on ``path`` (exact match; a path with a query string matches
        first, then the bare path)."""
        with self._lock:
            self._routes[path] = route

    def route(self, path: str, body: Body = b"", **options: object) -> Route:
        """Shorthand: ``server.route("/f", rss_bytes, etag='"1"')``; returns the Route."""
        made = Route(body=body, **options)  # type: ignore[arg-type]
        self.set_route(path, made)
        return made

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``location`` (relative or absolute)."""
        self.set_route(
            path, Route(status=status, content_type=None, headers={"Location": location})
        )

    def remove_route(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    def _lookup(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path) or self._routes.get(path.split("?", 1)[0])

    # request log
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path or r.path.split("?", 1)[0] == path]

    def clear_requests(self) -> None:
        """Forget logged requests and reset ``peak_concurrency``."""
        with self._lock:
            self._requests.clear()
            self._peak = self._active

    @property
    def peak_concurrency(self) -> int:
        """Most requests served at the same time since start or ``clear_requests``."""
        with self._lock:
            return self._peak

    @property
    def connections(self) -> int:
        """TCP connections accepted since start (keep-alive reuse keeps this low)."""
        with self._lock:
            return self._connections

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._peak = max(self._peak, self._active)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1


# --- bodies ------------------------------------------------------------------------


@cache
def gzip_bomb(decoded_size: int = 64 * 1024 * 1024) -> bytes:
    """A gzip body of ``decoded_size`` zero bytes (64 MiB compresses to about 64 KB).

    Serve it with ``headers={"Content-Encoding": "gzip"}``.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(decoded_size // len(block))]
    parts.append(compressor.compress(bytes(decoded_size % len(block))))
    parts.append(compressor.flush())
    return b"".join(parts)


def stream_of(size: int, chunk_size: int = 64 * 1024, fill: bytes = b"x") -> Body:
    """A streamed body of ``size`` bytes, never held in memory at once."""

    def chunks() -> Iterator[bytes]:
        block = fill * chunk_size
        sent = 0
        while sent < size:
            piece = block[: min(chunk_size, size - sent)]
            sent += len(piece)
            yield piece

    return chunks


def http_date(when: datetime) -> str:
    """An HTTP date (for Last-Modified / Retry-After) from an aware datetime."""
    return format_datetime(when, usegmt=True)


def rss_document(
    title: str,
    items: Sequence[dict[str, str]],
    *,
    link: str = "https://news.example.test/",
) -> bytes:
    """A minimal RSS 2.0 document; item keys: guid, title, link, description, pubDate,
    source (the outlet, as aggregators name it), dc:publisher."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link>",
        "<description>test feed</description>",
    ]
    for item in items:
        parts.append("<item>")
        for tag in ("guid", "title", "link", "description", "pubDate", "source", "dc:publisher"):
            if tag in item:
                parts.append(f"<{tag}>{escape(item[tag])}</{tag}>")
        parts.append("</item>")
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


def atom_document(
    title: str,
    entries: Sequence[dict[str, str]],
    *,
    feed_id: str = "urn:example:feed",
) -> bytes:
    """A minimal Atom document; entry keys: id, title, link, summary, updated."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title><id>{escape(feed_id)}</id><updated>{now}</updated>",
    ]
    for entry in entries:
        parts.append("<entry>")
        if "id" in entry:
            parts.append(f"<id>{escape(entry['id'])}</id>")
        if "title" in entry:
            parts.append(f"<title>{escape(entry['title'])}</title>")
        if "link" in entry:
            parts.append(f'<link href="{escape(entry["link"], {chr(34): "&quot;"})}"/>')
        if "summary" in entry:
            parts.append(f"<summary>{escape(entry['summary'])}</summary>")
        parts.append(f"<updated>{escape(entry.get('updated', now))}</updated>")
        parts.append("</entry>")
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")
