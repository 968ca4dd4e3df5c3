"""Integration tests: FeedFetcher against a real HTTP server on 127.0.0.1.

Every connection stays inside 127.0.0.0/8. SSRF cases use the guard's seams: a
StaticResolver maps test host names to 127.0.0.1, and a policy declares only the
"public" test server's port reachable, so both allowed and refused hops are real
connections (or real refusals) without any other network.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from bot.errors import (
    BlockedAddressError,
    DeadlineError,
    FetchError,
    HTTPStatusError,
    ParseError,
    TooLargeError,
)
from bot.fetching.client import FeedFetcher, RedirectError
from bot.fetching.conditional import next_state_after_success
from bot.fetching.guard import StaticResolver
from bot.models import FeedState
from bot.parsing.feeds import parse_feed
from bot.settings import FetchOptions
from tests.support.feed_server import (
    ATOM_TYPE,
    FeedServer,
    Route,
    atom_document,
    gzip_bomb,
    rss_document,
    stream_of,
)
from tests.support.policies import loopback_port_is_public
from tests.support.ports import unused_port
from tests.support.tls import client_context, server_context

RSS = rss_document(
    "Test News",
    [
        {"guid": "1", "title": "First", "link": "https://news.example.test/1"},
        {"guid": "2", "title": "Second", "link": "https://news.example.test/2"},
    ],
)
RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
<channel rdf:about="https://rdf.example.test/"><title>RDF</title><link>https://rdf.example.test/</link>
<description>d</description></channel>
<item rdf:about="https://rdf.example.test/1"><title>R1</title><link>https://rdf.example.test/1</link></item>
</rdf:RDF>
"""

OPTIONS = FetchOptions(deadline_seconds=10, max_body_bytes=1024 * 1024, max_redirects=3)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def other_server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[FeedFetcher]:
    async with FeedFetcher(OPTIONS, allow_private_networks=True) as f:
        yield f


# --- basic fetching and conditional GET ------------------------------------------------


async def test_fetch_rss(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/feed.xml", Route(body=RSS, etag='"v1"', last_modified="LM1"))
    result = await fetcher.fetch(server.url("/feed.xml"), FeedState())
    assert result.status == 200 and not result.not_modified
    assert result.body == RSS
    assert result.etag == '"v1"' and result.last_modified == "LM1"
    assert result.final_url == server.url("/feed.xml")
    assert result.headers["content-type"].startswith("application/rss+xml")
    assert all(k == k.lower() for k in result.headers)
    assert result.body_hash is not None and len(result.body_hash) == 64
    parsed = parse_feed(result.body, result.headers, result.final_url)
    assert [i.title for i in parsed.items] == ["First", "Second"]


async def test_sends_feed_headers(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/feed.xml", Route(body=RSS))
    await fetcher.fetch(server.url("/feed.xml"), FeedState())
    (request,) = server.requests_for("/feed.xml")
    assert request.headers["user-agent"] == OPTIONS.user_agent
    assert "application/rss+xml" in request.headers["accept"]
    assert request.headers["accept-encoding"] == "gzip, deflate"
    assert "if-none-match" not in request.headers


async def test_conditional_get_etag(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/feed.xml", Route(body=RSS, etag='"v1"'))
    first = await fetcher.fetch(server.url("/feed.xml"), FeedState())
    state = next_state_after_success(
        FeedState(),
        etag=first.etag,
        last_modified=first.last_modified,
        body_hash=first.body_hash,
        now=datetime.now(UTC),
        interval=300,
    )
    second = await fetcher.fetch(server.url("/feed.xml"), state)
    assert second.not_modified and second.status == 304 and second.body == b""
    assert second.body_hash is None
    assert server.requests_for("/feed.xml")[1].headers["if-none-match"] == '"v1"'


async def test_connection_is_kept_alive_across_304s(server: FeedServer) -> None:
    # One client, one feed at a time: every fetch after the first can reuse the
    # connection only if the 304 before it was read to its end.
    for i in range(5):
        server.set_route(f"/f{i}.xml", Route(body=RSS, etag=f'"v{i}"'))
    async with FeedFetcher(
        FetchOptions(deadline_seconds=10, concurrency=1, per_host=1), allow_private_networks=True
    ) as one_slot:
        for _ in range(4):
            for i in range(5):
                result = await one_slot.fetch(server.url(f"/f{i}.xml"), FeedState(etag=f'"v{i}"'))
                assert result.not_modified
    assert len(server.requests) == 20
    assert server.connections == 1


async def test_connection_is_kept_alive_across_redirects_and_errors(server: FeedServer) -> None:
    server.set_route("/feed.xml", Route(body=RSS))
    server.redirect("/old.xml", "/feed.xml")
    server.set_route("/gone.xml", Route(body=b"gone\n", status=404))
    async with FeedFetcher(
        FetchOptions(deadline_seconds=10, concurrency=1, per_host=1), allow_private_networks=True
    ) as one_slot:
        for _ in range(3):
            assert (await one_slot.fetch(server.url("/old.xml"), FeedState())).body == RSS
            with pytest.raises(HTTPStatusError):
                await one_slot.fetch(server.url("/gone.xml"), FeedState())
    assert len(server.requests) == 9
    assert server.connections == 1


async def test_a_cookie_a_feed_sets_is_sent_back_to_its_host(
    server: FeedServer, fetcher: FeedFetcher
) -> None:
    # The jar reads only responses that set a cookie (a pass of 304s sets none); one
    # that does is kept and sent back, as by any client with cookies.
    server.set_route("/feed.xml", Route(body=RSS))
    server.set_route("/consent.xml", Route(body=RSS, headers={"Set-Cookie": "consent=yes; Path=/"}))
    for path in ("/feed.xml", "/consent.xml", "/feed.xml"):
        await fetcher.fetch(server.url(path), FeedState())
    before, setting, after = server.requests
    assert "cookie" not in before.headers and "cookie" not in setting.headers
    assert after.headers["cookie"] == "consent=yes"


async def test_conditional_get_last_modified(server: FeedServer, fetcher: FeedFetcher) -> None:
    lm = "Wed, 01 May 2024 10:00:00 GMT"
    server.set_route("/feed.xml", Route(body=RSS, last_modified=lm))
    result = await fetcher.fetch(server.url("/feed.xml"), FeedState(last_modified=lm))
    assert result.not_modified
    assert server.requests_for("/feed.xml")[0].headers["if-modified-since"] == lm


async def test_changed_etag_gets_full_body(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/feed.xml", Route(body=RSS, etag='"v2"'))
    result = await fetcher.fetch(server.url("/feed.xml"), FeedState(etag='"v1"'))
    assert not result.not_modified and result.etag == '"v2"'


@pytest.mark.parametrize(
    ("body", "content_type", "title"),
    [
        (atom_document("Atom Feed", [{"id": "a", "title": "A1"}]), ATOM_TYPE, "Atom Feed"),
        (RDF, "application/rdf+xml", "RDF"),
        (RSS, "text/plain", "Test News"),  # wrong content type: still a feed
    ],
)
async def test_formats_and_content_types(
    server: FeedServer, fetcher: FeedFetcher, body: bytes, content_type: str, title: str
) -> None:
    server.set_route("/f", Route(body=body, content_type=content_type))
    result = await fetcher.fetch(server.url("/f"), FeedState())
    assert parse_feed(result.body, result.headers, result.final_url).title == title


async def test_html_page_fetches_but_does_not_parse(
    server: FeedServer, fetcher: FeedFetcher
) -> None:
    page = b"<!DOCTYPE html><html><head><title>Home</title></head><body>hi</body></html>"
    server.set_route("/", Route(body=page, content_type="text/html; charset=utf-8"))
    result = await fetcher.fetch(server.url("/"), FeedState())
    with pytest.raises(ParseError, match="web page"):
        parse_feed(result.body, result.headers, result.final_url)


async def test_proxy_environment_is_ignored(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would resolve and connect for us, bypassing the guard.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    server.set_route("/feed.xml", Route(body=RSS))
    async with FeedFetcher(OPTIONS, allow_private_networks=True) as fetcher:
        result = await fetcher.fetch(server.url("/feed.xml"), FeedState())
    assert result.status == 200


# --- statuses -------------------------------------------------------------------------


async def test_not_found(server: FeedServer, fetcher: FeedFetcher) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        await fetcher.fetch(server.url("/missing?token=s3cret"), FeedState())
    assert caught.value.status == 404
    assert caught.value.retry_after is None
    assert "404" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "s3cret" not in caught.value.url


async def test_retry_after_seconds(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/f", Route(status=429, body=b"slow down", headers={"Retry-After": "120"}))
    with pytest.raises(HTTPStatusError) as caught:
        await fetcher.fetch(server.url("/f"), FeedState())
    assert caught.value.status == 429 and caught.value.retry_after == 120


async def test_retry_after_date(server: FeedServer, fetcher: FeedFetcher) -> None:
    route = Route(status=503, headers={"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    server.set_route("/f", route)
    with pytest.raises(HTTPStatusError) as caught:
        await fetcher.fetch(server.url("/f"), FeedState())
    assert caught.value.status == 503
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


@pytest.mark.parametrize("status", [204, 206, 300, 401, 403, 410, 500])
async def test_other_statuses_are_errors(
    server: FeedServer, fetcher: FeedFetcher, status: int
) -> None:
    server.set_route("/f", Route(status=status, body=b"" if status == 204 else b"x"))
    with pytest.raises(HTTPStatusError) as caught:
        await fetcher.fetch(server.url("/f"), FeedState())
    assert caught.value.status == status


# --- redirects --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_followed(server: FeedServer, fetcher: FeedFetcher, status: int) -> None:
    server.redirect("/old", server.url("/new"), status=status)
    server.set_route("/new", Route(body=RSS))
    result = await fetcher.fetch(server.url("/old"), FeedState())
    assert result.body == RSS and result.final_url == server.url("/new")


async def test_relative_redirect(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.redirect("/a/old", "../b/new")
    server.set_route("/b/new", Route(body=RSS))
    result = await fetcher.fetch(server.url("/a/old"), FeedState())
    assert result.final_url == server.url("/b/new")


async def test_conditional_headers_survive_redirect(
    server: FeedServer, fetcher: FeedFetcher
) -> None:
    server.redirect("/old", "/new", status=301)
    server.set_route("/new", Route(body=RSS, etag='"e"'))
    result = await fetcher.fetch(server.url("/old"), FeedState(etag='"e"'))
    assert result.not_modified


async def test_redirect_loop(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    with pytest.raises(RedirectError, match="loop"):
        await fetcher.fetch(server.url("/a"), FeedState())
    assert len(server.requests) == 2


async def test_self_redirect(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.redirect("/a", "/a")
    with pytest.raises(RedirectError, match="loop"):
        await fetcher.fetch(server.url("/a"), FeedState())


async def test_too_many_redirects(server: FeedServer, fetcher: FeedFetcher) -> None:
    for i in range(6):
        server.redirect(f"/r{i}", f"/r{i + 1}")
    server.set_route("/r6", Route(body=RSS))
    with pytest.raises(RedirectError, match="more than 3"):
        await fetcher.fetch(server.url("/r0"), FeedState())
    assert len(server.requests) == 4  # the first request plus 3 redirects


async def test_max_redirects_is_exact(server: FeedServer, fetcher: FeedFetcher) -> None:
    for i in range(3):
        server.redirect(f"/r{i}", f"/r{i + 1}")
    server.set_route("/r3", Route(body=RSS))
    result = await fetcher.fetch(server.url("/r0"), FeedState())
    assert result.final_url == server.url("/r3")


async def test_redirect_without_location(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/a", Route(status=302))
    with pytest.raises(RedirectError, match="without a Location"):
        await fetcher.fetch(server.url("/a"), FeedState())


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/"]
)
async def test_redirect_to_other_scheme_refused(
    server: FeedServer, fetcher: FeedFetcher, target: str
) -> None:
    server.redirect("/a", target)
    with pytest.raises(BlockedAddressError, match="reached by a redirect"):
        await fetcher.fetch(server.url("/a"), FeedState())


# --- limits -------------------------------------------------------------------------------


async def test_deadline_stops_a_trickling_server(server: FeedServer) -> None:
    # Each chunk arrives well within any per-read timeout; only the total deadline fires.
    server.set_route("/slow", Route(body=RSS * 20, chunk_size=16, delay=0.05))
    options = FetchOptions(deadline_seconds=0.5)
    async with FeedFetcher(options, allow_private_networks=True) as fetcher:
        with pytest.raises(DeadlineError) as caught:
            await fetcher.fetch(server.url("/slow"), FeedState())
    assert caught.value.kind == "deadline"


async def test_gzip_body_is_decoded(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/f", Route(body=RSS, gzip=True))
    result = await fetcher.fetch(server.url("/f"), FeedState())
    assert result.body == RSS
    assert result.headers["content-encoding"] == "gzip"


async def test_multi_member_gzip(server: FeedServer, fetcher: FeedFetcher) -> None:
    body = gzip.compress(RSS[:100]) + gzip.compress(RSS[100:])
    server.set_route("/f", Route(body=body, headers={"Content-Encoding": "gzip"}))
    assert (await fetcher.fetch(server.url("/f"), FeedState())).body == RSS


@pytest.mark.parametrize("raw", [False, True])
async def test_deflate_body_is_decoded(server: FeedServer, fetcher: FeedFetcher, raw: bool) -> None:
    if raw:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(RSS) + compressor.flush()
    else:
        body = zlib.compress(RSS)
    server.set_route("/f", Route(body=body, headers={"Content-Encoding": "deflate"}))
    assert (await fetcher.fetch(server.url("/f"), FeedState())).body == RSS


async def test_gzip_bomb_is_capped(server: FeedServer, fetcher: FeedFetcher) -> None:
    bomb = gzip_bomb(64 * 1024 * 1024)
    assert len(bomb) < OPTIONS.max_body_bytes  # small on the wire, huge decoded
    server.set_route("/bomb", Route(body=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(TooLargeError, match="after decompression"):
        await fetcher.fetch(server.url("/bomb"), FeedState())


async def test_corrupt_gzip(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/f", Route(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    with pytest.raises(FetchError, match="corrupt gzip"):
        await fetcher.fetch(server.url("/f"), FeedState())


async def test_unsupported_encoding(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/f", Route(body=b"\x00\x01", headers={"Content-Encoding": "br"}))
    with pytest.raises(FetchError, match="unsupported content encoding"):
        await fetcher.fetch(server.url("/f"), FeedState())


async def test_huge_declared_body_refused_early(server: FeedServer, fetcher: FeedFetcher) -> None:
    size = 50 * 1024 * 1024
    server.set_route("/huge", Route(body=stream_of(size), content_length=size))
    with pytest.raises(TooLargeError):
        await fetcher.fetch(server.url("/huge"), FeedState())


async def test_huge_streamed_body_capped(server: FeedServer, fetcher: FeedFetcher) -> None:
    server.set_route("/huge", Route(body=stream_of(50 * 1024 * 1024)))  # no Content-Length
    with pytest.raises(TooLargeError):
        await fetcher.fetch(server.url("/huge"), FeedState())


async def test_body_exactly_at_cap_is_fine(server: FeedServer) -> None:
    options = FetchOptions(max_body_bytes=len(RSS))
    server.set_route("/f", Route(body=RSS, gzip=True))
    async with FeedFetcher(options, allow_private_networks=True) as fetcher:
        assert (await fetcher.fetch(server.url("/f"), FeedState())).body == RSS


async def test_per_host_limit(server: FeedServer) -> None:
    server.set_route("/slow", Route(body=RSS, chunk_size=256, delay=0.02))
    options = FetchOptions(concurrency=8, per_host=1)
    async with FeedFetcher(options, allow_private_networks=True) as fetcher:
        await asyncio.gather(*(fetcher.fetch(server.url("/slow"), FeedState()) for _ in range(4)))
        assert len(fetcher._hosts) == 0  # per-host slots are released
    assert server.peak_concurrency == 1


async def test_global_limit(server: FeedServer) -> None:
    server.set_route("/slow", Route(body=RSS, chunk_size=256, delay=0.02))
    options = FetchOptions(concurrency=2, per_host=10)
    async with FeedFetcher(options, allow_private_networks=True) as fetcher:
        await asyncio.gather(*(fetcher.fetch(server.url("/slow"), FeedState()) for _ in range(6)))
    assert server.peak_concurrency <= 2


# --- HTTPS: TLS on the fetcher's own asyncio streams ------------------------------------

TLS_HOST = "feeds.example.test"


def _tls_fetcher(**options: object) -> FeedFetcher:
    """A fetcher that resolves TLS_HOST to 127.0.0.1 and trusts only the test CA."""
    return FeedFetcher(
        FetchOptions(deadline_seconds=10, max_body_bytes=1024 * 1024, **options),  # type: ignore[arg-type]
        allow_private_networks=True,
        resolver=StaticResolver({TLS_HOST: ["127.0.0.1"]}),
        ssl_context=client_context(),
    )


async def test_https_feed_fetched_then_revalidated_on_one_connection() -> None:
    body = rss_document("TLS News", [{"guid": str(i), "title": f"Item {i}"} for i in range(1000)])
    with FeedServer(tls=server_context(TLS_HOST)) as tls:
        tls.set_route("/feed.xml", Route(body=body, etag='"v1"', chunk_size=4096))
        url = tls.url("/feed.xml", host=TLS_HOST)
        async with _tls_fetcher(concurrency=1, per_host=1) as fetcher:
            first = await fetcher.fetch(url, FeedState())
            assert first.status == 200 and first.body == body and len(body) > 40_000
            for _ in range(3):
                again = await fetcher.fetch(url, FeedState(etag=first.etag))
                assert again.not_modified and again.body == b""
        assert tls.connections == 1
        assert [r.headers["host"] for r in tls.requests] == [f"{TLS_HOST}:{tls.port}"] * 4


async def test_https_certificate_for_another_name_is_rejected() -> None:
    # The connection goes to 127.0.0.1, but the certificate is checked against the
    # feed's host name (SNI and verification use the name, not the checked address).
    with FeedServer(tls=server_context("someone-else.example.test")) as tls:
        tls.set_route("/feed.xml", Route(body=RSS))
        async with _tls_fetcher() as fetcher:
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(tls.url("/feed.xml", host=TLS_HOST), FeedState())
        assert f"TLS certificate of {TLS_HOST} was rejected" in str(caught.value)
        assert tls.requests == []


async def test_https_server_that_stops_mid_body_is_a_fetch_error() -> None:
    with FeedServer(tls=server_context(TLS_HOST)) as tls:
        tls.set_route("/f", Route(body=stream_of(100), content_length=1000))
        async with _tls_fetcher() as fetcher:
            with pytest.raises(FetchError, match="closed the connection"):
                await fetcher.fetch(tls.url("/f", host=TLS_HOST), FeedState())


# --- transport errors ---------------------------------------------------------------------


async def test_connection_refused(fetcher: FeedFetcher) -> None:
    port = unused_port()
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(f"http://127.0.0.1:{port}/feed?key=s3cret", FeedState())
    assert type(caught.value) is FetchError
    assert "refused the connection" in str(caught.value)
    assert "Traceback" not in str(caught.value) and "s3cret" not in str(caught.value)


async def test_tls_failure(server: FeedServer, fetcher: FeedFetcher) -> None:
    # HTTPS to a plain HTTP server: the handshake fails.
    with pytest.raises(FetchError, match="TLS"):
        await fetcher.fetch(f"https://127.0.0.1:{server.port}/feed.xml", FeedState())


async def test_server_closing_mid_body(server: FeedServer, fetcher: FeedFetcher) -> None:
    # Promises more bytes than it sends, then closes.
    server.set_route("/f", Route(body=stream_of(100), content_length=1000))
    with pytest.raises(FetchError, match="closed the connection"):
        await fetcher.fetch(server.url("/f"), FeedState())


# --- SSRF through the real fetcher ------------------------------------------------------


async def test_loopback_refused_without_opt_in(server: FeedServer) -> None:
    server.set_route("/feed.xml", Route(body=RSS))
    async with FeedFetcher(OPTIONS) as fetcher:
        for url in (
            server.url("/feed.xml"),
            f"http://2130706433:{server.port}/feed.xml",
            f"http://0x7f.1:{server.port}/feed.xml",
            f"http://[::ffff:127.0.0.1]:{server.port}/feed.xml",
        ):
            with pytest.raises(BlockedAddressError, match="loopback"):
                await fetcher.fetch(url, FeedState())
    assert server.requests == []


async def test_name_resolving_to_loopback_refused_at_connect(server: FeedServer) -> None:
    resolver = StaticResolver({"feeds.example.test": ["127.0.0.1"]})
    server.set_route("/feed.xml", Route(body=RSS))
    async with FeedFetcher(OPTIONS, resolver=resolver) as fetcher:
        with pytest.raises(BlockedAddressError) as caught:
            await fetcher.fetch(server.url("/feed.xml", host="feeds.example.test"), FeedState())
    assert "127.0.0.1 is a loopback address" in str(caught.value)
    assert caught.value.url == server.url("/feed.xml", host="feeds.example.test")
    assert server.requests == []


@pytest.fixture
async def public_fetcher(server: FeedServer) -> AsyncIterator[FeedFetcher]:
    """A production-policy fetcher where ``server`` plays a public host."""
    resolver = StaticResolver(
        {
            "feeds.example.test": ["127.0.0.1"],
            "internal.example.test": ["127.0.0.1"],
            "mixed.example.test": ["127.0.0.1", "10.0.0.5"],
        }
    )
    async with FeedFetcher(
        OPTIONS, resolver=resolver, policy=loopback_port_is_public(server.port)
    ) as fetcher:
        yield fetcher


async def test_public_host_is_fetched_with_its_name(
    server: FeedServer, public_fetcher: FeedFetcher
) -> None:
    server.set_route("/feed.xml", Route(body=RSS))
    url = server.url("/feed.xml", host="feeds.example.test")
    result = await public_fetcher.fetch(url, FeedState())
    assert result.body == RSS and result.final_url == url
    # Connected to the checked IP, but the Host header still names the site.
    assert server.requests[0].headers["host"] == f"feeds.example.test:{server.port}"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://internal.example.test:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://[::ffff:7f00:1]:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_redirect_from_public_host_to_forbidden_refused(
    server: FeedServer,
    other_server: FeedServer,
    public_fetcher: FeedFetcher,
    target: str,
) -> None:
    other_server.set_route("/secret", Route(body=b"internal data"))
    server.redirect("/feed.xml", target.format(port=other_server.port))
    with pytest.raises(BlockedAddressError) as caught:
        await public_fetcher.fetch(server.url("/feed.xml", host="feeds.example.test"), FeedState())
    assert str(caught.value).startswith("refused: ")
    assert other_server.requests == []  # the forbidden hop never connected
    assert len(server.requests) == 1


async def test_redirect_between_public_paths_allowed(
    server: FeedServer, public_fetcher: FeedFetcher
) -> None:
    server.redirect("/old", "/new")
    server.set_route("/new", Route(body=RSS))
    result = await public_fetcher.fetch(server.url("/old", host="feeds.example.test"), FeedState())
    assert result.final_url == server.url("/new", host="feeds.example.test")


async def test_name_with_any_forbidden_address_refused(
    server: FeedServer, public_fetcher: FeedFetcher
) -> None:
    server.set_route("/feed.xml", Route(body=RSS))
    with pytest.raises(BlockedAddressError, match=r"10\.0\.0\.5 is a private address"):
        await public_fetcher.fetch(server.url("/feed.xml", host="mixed.example.test"), FeedState())
    assert server.requests == []


async def test_unknown_host(public_fetcher: FeedFetcher) -> None:
    with pytest.raises(FetchError, match="could not resolve host"):
        await public_fetcher.fetch("http://nowhere.example.test/feed", FeedState())
