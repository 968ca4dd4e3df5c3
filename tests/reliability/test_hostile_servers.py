"""Hostile servers through the real Poller: every bad answer becomes a recorded
feed error with backoff, never a crash, and never holds up a healthy feed polled
in the same pass.

Each hostile feed and one healthy feed are polled together by
``Poller.poll_due`` against a real SQLite database; the feeds rows are then
checked: ``consecutive_errors``, ``last_error`` and ``next_check`` (one interval
after the first failure, two after the second, or the server's Retry-After).
"""

from __future__ import annotations

import itertools
import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.fetching.client import FeedFetcher
from bot.pipeline import Poller
from bot.settings import FetchOptions
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher
from tests.reliability.conftest import Table, make_settings
from tests.support.feed_server import FeedServer, Route, gzip_bomb, rss_document, stream_of

INTERVAL = 600.0
CAP = 1024 * 1024
# Long enough that every fast case answers within it on a loaded machine, 34 feeds
# at once; the trickle (a minute of body) and the silent server still run it out.
DEADLINE = 5.0
OPTIONS = FetchOptions(
    deadline_seconds=DEADLINE, connect_timeout_seconds=DEADLINE, max_body_bytes=CAP,
    max_redirects=3, concurrency=64, per_host=64, max_backoff_seconds=6 * 3600,
)
RSS = rss_document("Healthy", [
    {"guid": "h1", "title": "First healthy story", "link": "https://h.example.test/1"},
    {"guid": "h2", "title": "Second healthy story", "link": "https://h.example.test/2"},
])


def _deflate_bomb(size: int = 64 * 1024 * 1024) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join([*(comp.compress(block) for _ in range(size // len(block))), comp.flush()])


def _endless() -> Iterator[bytes]:
    return itertools.repeat(b"<rss>" + b"x" * 65531)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the error kind the feed must record
    setup: Callable[[FeedServer, str], str]  # (server, path) -> URL to watch
    retry_after: float | None = None


def _route(route: Route) -> Callable[[FeedServer, str], str]:
    def setup(server: FeedServer, path: str) -> str:
        server.set_route(path, route)
        return server.url(path)

    return setup


def _loop(server: FeedServer, path: str) -> str:
    server.redirect(path, path + "/b")
    server.redirect(path + "/b", path)
    return server.url(path)


def _chain(server: FeedServer, path: str) -> str:
    for i in range(6):
        server.redirect(f"{path}/{i}", f"{path}/{i + 1}")
    server.set_route(f"{path}/6", Route(body=RSS))
    return server.url(f"{path}/0")


def _tls(server: FeedServer, path: str) -> str:
    server.set_route(path, Route(body=RSS))
    return f"https://127.0.0.1:{server.port}{path}"


_SILENT: list[socket.socket] = []


def _silent(server: FeedServer, path: str) -> str:
    # Listens (the kernel completes the handshake) but never reads or answers.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    _SILENT.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def _refused(server: FeedServer, path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
HTML = b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Hi</p></body></html>"

CASES = [
    Case("gzip bomb (64 MiB of zeros, ~64 KB on the wire)", "too_large",
         _route(Route(body=gzip_bomb(), headers={"Content-Encoding": "gzip"}))),
    Case("deflate bomb (64 MiB)", "too_large",
         _route(Route(body=_deflate_bomb(), headers={"Content-Encoding": "deflate"}))),
    Case("endless body, no Content-Length", "too_large", _route(Route(body=_endless))),
    Case("huge declared body (50 MB Content-Length)", "too_large",
         _route(Route(body=stream_of(50 * 1024 * 1024), content_length=50 * 1024 * 1024))),
    Case("trickling server (16 B every 50 ms)", "deadline",
         _route(Route(body=RSS * 50, chunk_size=16, delay=0.05))),
    Case("accepts, never answers", "deadline", _silent),
    Case("redirect loop", "redirect", _loop),
    Case("6 redirects (limit 3)", "redirect", _chain),
    Case("HTML page instead of a feed", "parse",
         _route(Route(body=HTML, content_type="text/html; charset=utf-8"))),
    Case("PNG served as image/png", "parse", _route(Route(body=PNG, content_type="image/png"))),
    Case("binary garbage as application/rss+xml", "parse", _route(Route(body=PNG))),
    Case("empty 200", "parse", _route(Route(body=b""))),
    Case("body shorter than Content-Length", "fetch",
         _route(Route(body=stream_of(100), content_length=1000))),
    Case("corrupt gzip", "fetch",
         _route(Route(body=b"not gzip", headers={"Content-Encoding": "gzip"}))),
    Case("unknown Content-Encoding (br)", "fetch",
         _route(Route(body=b"\x00", headers={"Content-Encoding": "br"}))),
    Case("https to a plain-HTTP port (TLS failure)", "fetch", _tls),
    Case("connection refused", "fetch", _refused),
    Case("404", "status", _route(Route(status=404, body=b"nope"))),
    Case("410", "status", _route(Route(status=410, body=b"gone"))),
    Case("401", "status", _route(Route(status=401, body=b"auth"))),
    Case("500", "status", _route(Route(status=500, body=b"oops"))),
    Case("502", "status", _route(Route(status=502, body=b"bad gateway"))),
    Case("429 Retry-After: 7200", "status",
         _route(Route(status=429, headers={"Retry-After": "7200"})), retry_after=7200),
    Case("503 Retry-After: 1 year (capped at max backoff)", "status",
         _route(Route(status=503, headers={"Retry-After": str(365 * 86400)})),
         retry_after=6 * 3600),
    Case("503 with a reason phrase full of control characters", "status",
         _route(Route(status=503, headers={"Retry-After": "soon\x01\x02"}))),
]

# Served with a wrong Content-Type or a lying charset: real feeds do this, so the
# bot should read them if it can; either way it must not crash.
TOLERATED = [
    ("valid RSS as text/plain", Route(body=RSS, content_type="text/plain")),
    ("valid RSS as application/octet-stream",
     Route(body=RSS, content_type="application/octet-stream")),
    ("valid RSS as text/html", Route(body=RSS, content_type="text/html")),
    ("valid RSS without Content-Type", Route(body=RSS, content_type=None)),
    ("UTF-8 body, header says charset=utf-16",
     Route(body=RSS, content_type="application/rss+xml; charset=utf-16")),
    ("UTF-8 body, header says charset=x-bogus",
     Route(body=RSS, content_type="application/rss+xml; charset=x-bogus")),
    ("Latin-1 body declared UTF-8",
     Route(body=RSS.replace(b"First", "Premi\u00e8re".encode("latin-1")))),
    ("UTF-16 body declared ISO-8859-1",
     Route(body=RSS.decode().replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16"),
           content_type="application/rss+xml; charset=iso-8859-1")),
]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv
    for sock in _SILENT:
        sock.close()
    _SILENT.clear()


async def test_hostile_servers_become_feed_errors_with_backoff(
    tmp_path: Path, server: FeedServer, table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, interval=INTERVAL, fetch=OPTIONS)
    db = Database.open(settings.database_path)
    start = datetime.now(UTC).replace(microsecond=0)
    ids: dict[int, Case] = {}
    tolerated: dict[int, str] = {}
    try:
        for i, case in enumerate(CASES):
            url = case.setup(server, f"/hostile/{i}")
            ids[db.add_feed(url, now=start).id] = case
        for i, (name, route) in enumerate(TOLERATED):
            server.set_route(f"/tolerated/{i}", route)
            tolerated[db.add_feed(server.url(f"/tolerated/{i}"), now=start).id] = name
        server.set_route("/healthy.xml", Route(body=RSS))
        healthy = db.add_feed(server.url("/healthy.xml"), now=start).id

        async with FeedFetcher(OPTIONS, allow_private_networks=True) as fetcher:
            poller = Poller(db, fetcher, Matcher(), settings)
            first = await poller.poll_due(start)
            for fid, case in ids.items():
                st = db.get_feed(fid).state  # type: ignore[union-attr]
                assert st.consecutive_errors == 1 and st.last_error, case.name
                wait = case.retry_after if case.retry_after is not None else INTERVAL
                assert st.next_check == start + timedelta(seconds=wait), case.name
            later = start + timedelta(seconds=7 * 3600)  # every feed due again
            second = await poller.poll_due(later)

        by_id = {r.feed_id: r for r in first.feeds}
        assert set(by_id) == {*ids, *tolerated, healthy}
        assert not [r for r in (*first.feeds, *second.feeds) if r.error_kind == "internal"]
        assert "unexpected error" not in caplog.text
        wrong: list[str] = []
        for fid, case in ids.items():
            report, feed = by_id[fid], db.get_feed(fid)
            assert feed is not None
            if report.error_kind != case.kind:
                wrong.append(f"{case.name}: {report.error_kind} {report.error}")
                continue
            st = feed.state
            assert st.consecutive_errors == 2 and st.last_error, case.name
            assert st.last_ok is None and db.item_count(fid) == 0, case.name
            if case.retry_after is not None:
                assert st.next_check == later + timedelta(seconds=case.retry_after), case.name
            else:
                assert st.next_check == later + timedelta(seconds=2 * INTERVAL), case.name
        assert wrong == []

        h = db.get_feed(healthy)
        assert h is not None and h.state.consecutive_errors == 0 and db.item_count(healthy) == 2
        assert by_id[healthy].error is None and by_id[healthy].new_items == 2

        stored = [n for fid, n in tolerated.items() if by_id[fid].error is None]
        refused = [f"{n}: {by_id[fid].error}" for fid, n in tolerated.items()
                   if by_id[fid].error is not None]
        for fid, name in tolerated.items():
            if by_id[fid].error is None:
                assert db.item_count(fid) == 2, name
    finally:
        db.close()
    table.row(
        "Hostile servers: gzip and deflate bombs, endless and huge bodies, trickle, silent "
        "server, redirect loop and chain, HTML/PNG/garbage/empty, short body, corrupt gzip, "
        "unknown encoding, TLS failure, refused, 401/404/410/500/502, 429 and 503 with "
        "Retry-After",
        "one Poller pass with a healthy feed, then a second pass", len(CASES),
        f"{len(CASES)} recorded errors of the expected kind, consecutive_errors 1 then 2, "
        "next_check +1 then +2 intervals (Retry-After honoured, capped at max backoff); "
        "0 internal errors; the healthy feed stored in the same pass",
    )
    table.row(
        "Wrong Content-Type or lying charset on a real feed",
        "same passes", len(TOLERATED),
        f"{len(stored)} read and stored, {len(refused)} recorded as errors"
        + (f" ({'; '.join(refused)})" if refused else "") + ", 0 crashes",
    )
