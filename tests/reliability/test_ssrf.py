"""SSRF: with private networks not allowed (the default), no connection is ever
opened to a forbidden address, however the URL reaches it.

Every vector is fetched through the real :class:`FeedFetcher`. Connections are
counted twice: at a listener on 127.0.0.1 (accepted sockets) and at the
network backend (connect attempts; see ``connect_log`` in conftest). A
"public" test host is simulated with the fetcher's seams, as in
tests/integration/test_fetch.py: a StaticResolver maps names, and a policy
declares only the feed server's port reachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.bootstrap import running_poller
from bot.errors import BlockedAddressError, FetchError
from bot.fetching.client import FeedFetcher, RedirectError
from bot.fetching.guard import StaticResolver
from bot.models import FeedState
from bot.pipeline import Poller
from bot.settings import EnvSettings, FetchOptions
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher
from bot.telegram import commands as c
from bot.telegram.service import Caller, ChatService
from tests.reliability.conftest import ConnectionCounter, ConnectLog, Table, make_settings
from tests.support.feed_server import FeedServer, Route, rss_document
from tests.support.policies import loopback_port_is_public

RSS = rss_document("Public", [{"guid": "1", "title": "Hello", "link": "https://p.test/1"}])
OPTIONS = FetchOptions(deadline_seconds=5, connect_timeout_seconds=2, max_redirects=3)
PUBLIC_HOST = "feeds.example.test"

# (what it is, the address). Each is tried directly, by DNS name, and via a
# redirect to the literal and to the name.
TARGETS: list[tuple[str, str]] = [
    ("loopback", "127.0.0.1"),
    ("loopback", "127.1.2.3"),
    ("loopback", "::1"),
    ("private", "10.0.0.5"),
    ("private", "172.16.0.1"),
    ("private", "192.168.1.1"),
    ("private", "fd00::1"),
    ("link-local (metadata)", "169.254.169.254"),
    ("link-local", "fe80::1"),
    ("CGNAT", "100.64.0.1"),
    ("multicast", "224.0.0.1"),
    ("multicast", "ff02::1"),
    ("unspecified", "0.0.0.0"),
    ("unspecified", "::"),
    ("IPv4-mapped", "::ffff:127.0.0.1"),
    ("IPv4-mapped", "::ffff:169.254.169.254"),
    ("IPv4-mapped", "::ffff:10.0.0.5"),
    ("NAT64", "64:ff9b::7f00:1"),
    ("NAT64", "64:ff9b::a9fe:a9fe"),
    ("6to4", "2002:7f00:1::"),
    ("6to4", "2002:a9fe:a9fe::"),
    ("6to4", "2002:a00:5::"),
]
MODES = ("direct", "DNS name", "redirect to literal", "redirect to name")

# Numeric spellings the C resolver accepts; each tried directly and via a redirect.
NUMERIC_HOSTS = [
    "2130706433",  # 127.0.0.1 decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "0x7f.1",
    "2852039166",  # 169.254.169.254 decimal
    "0xa9fea9fe",
    "0251.0376.0251.0376",
    "167772165",  # 10.0.0.5
    "0xa000005",
]

OCTAL = {"0177.0.0.1", "0251.0376.0251.0376"}

BAD_SCHEMES = [
    "file:///etc/passwd",
    "ftp://127.0.0.1:{port}/feed",
    "gopher://127.0.0.1:{port}/_GET",
    "ws://127.0.0.1:{port}/",
    "dict://127.0.0.1:{port}/info",
    "ldap://127.0.0.1:{port}/",
    "data:text/xml,<rss/>",
    "javascript:alert(1)",
]

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _name(i: int) -> str:
    return f"evil-{i}.example.test"


def _resolver() -> StaticResolver:
    mapping: dict[str, list[str]] = {PUBLIC_HOST: ["127.0.0.1"]}
    for i, (_, address) in enumerate(TARGETS):
        mapping[_name(i)] = [address]
    return StaticResolver(mapping)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        srv.set_route("/feed.xml", Route(body=RSS))
        yield srv


@pytest.fixture
async def fetcher(server: FeedServer) -> AsyncIterator[FeedFetcher]:
    async with FeedFetcher(
        OPTIONS, resolver=_resolver(), policy=loopback_port_is_public(server.port)
    ) as f:
        yield f


def _vectors(server: FeedServer, port: int) -> list[tuple[str, str]]:
    """(label, URL to fetch) for every forbidden target and mode."""
    out: list[tuple[str, str]] = []
    for i, (kind, address) in enumerate(TARGETS):
        literal = f"http://{_host(address)}:{port}/feed.xml"
        by_name = f"http://{_name(i)}:{port}/feed.xml"
        for mode in MODES:
            if mode == "direct":
                url = literal
            elif mode == "DNS name":
                url = by_name
            else:
                path = f"/r/{i}/{mode.replace(' ', '-')}"
                server.redirect(path, literal if mode == "redirect to literal" else by_name)
                url = server.url(path, host=PUBLIC_HOST)
            out.append((f"{kind} {address} {mode}", url))
    for j, host in enumerate(NUMERIC_HOSTS):
        literal = f"http://{host}:{port}/feed.xml"
        out.append((f"numeric {host} direct", literal))
        server.redirect(f"/n/{j}", literal)
        out.append((f"numeric {host} redirect", server.url(f"/n/{j}", host=PUBLIC_HOST)))
    return out


async def test_forbidden_targets_never_connect(
    server: FeedServer, fetcher: FeedFetcher, listener: ConnectionCounter,
    connect_log: ConnectLog, table: Table,
) -> None:
    vectors = _vectors(server, listener.port)
    refused = unparseable = 0
    for label, url in vectors:
        if label.split()[1] in OCTAL and "redirect" in label:
            # httpx itself refuses to parse a Location with an octal IPv4 host:
            # the fetch fails before any connection, with a transport error.
            with pytest.raises(FetchError, match="malformed"):
                await fetcher.fetch(url, FeedState())
            unparseable += 1
            continue
        with pytest.raises(BlockedAddressError, match=r"^refused: ") as caught:
            await fetcher.fetch(url, FeedState())
        assert " is " in str(caught.value), label
        refused += 1
    stray = connect_log.to(except_port=server.port)
    assert stray == [], stray
    assert listener.accepted == 0
    # The harness really connects where it may: every redirect's first hop did.
    redirects = sum(1 for label, _ in vectors if "redirect" in label)
    assert len(server.requests) == redirects
    assert len(vectors) == len(TARGETS) * len(MODES) + 2 * len(NUMERIC_HOSTS) == 108
    table.row(
        "SSRF: loopback, private, link-local (169.254.169.254), CGNAT, multicast, "
        "unspecified, IPv4-mapped, NAT64, 6to4 × {direct, DNS name, redirect to literal, "
        "redirect to name}; decimal/hex/octal/short IPv4 × {direct, redirect}",
        "fetch through the real FeedFetcher, production policy",
        len(vectors),
        f"{refused} refused by the guard with the reason, {unparseable} unparseable redirect "
        f"(octal host in Location), {len(stray)} connect attempts, "
        f"{listener.accepted} connections",
    )


async def test_listener_counts_a_real_connection(
    listener: ConnectionCounter, connect_log: ConnectLog
) -> None:
    """Control: the counters do see a connection when one is allowed."""
    async with FeedFetcher(OPTIONS, allow_private_networks=True) as fetcher:
        with pytest.raises(Exception):  # noqa: B017 - the listener hangs up
            await fetcher.fetch(f"http://127.0.0.1:{listener.port}/", FeedState())
    assert connect_log.attempts == [("127.0.0.1", listener.port)]
    for _ in range(100):
        if listener.accepted:
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert listener.accepted == 1


async def test_only_http_and_https(
    server: FeedServer, fetcher: FeedFetcher, listener: ConnectionCounter,
    connect_log: ConnectLog, table: Table,
) -> None:
    urls = [u.format(port=listener.port) for u in BAD_SCHEMES]
    for i, url in enumerate(urls):
        server.redirect(f"/s/{i}", url)
    tried = 0
    for i, url in enumerate(urls):
        for target in (url, server.url(f"/s/{i}", host=PUBLIC_HOST)):
            with pytest.raises((BlockedAddressError, RedirectError)) as caught:
                await fetcher.fetch(target, FeedState())
            message = str(caught.value)
            assert "only http and https" in message or "invalid URL" in message, message
            tried += 1
    assert connect_log.to(except_port=server.port) == [] and listener.accepted == 0
    table.row(
        "Other schemes (file, ftp, gopher, ws, dict, ldap, data, javascript) × {direct, redirect}",
        "fetch", tried,
        f"{tried} refused (data:/javascript: redirects as invalid URLs), 0 connect attempts, "
        "0 connections",
    )


async def test_proxy_variables_cannot_bypass_the_guard(
    server: FeedServer, listener: ConnectionCounter, connect_log: ConnectLog,
    monkeypatch: pytest.MonkeyPatch, table: Table,
) -> None:
    proxy = f"http://127.0.0.1:{listener.port}"
    for name in PROXY_VARS:
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with FeedFetcher(
        OPTIONS, resolver=_resolver(), policy=loopback_port_is_public(server.port)
    ) as fetcher:
        # A permitted feed is fetched directly, not through the proxy...
        result = await fetcher.fetch(server.url("/feed.xml", host=PUBLIC_HOST), FeedState())
        assert result.body == RSS
        # ...and forbidden ones are refused rather than handed to it.
        vectors = _vectors(server, listener.port)
        for _, url in vectors:
            with pytest.raises(FetchError):
                await fetcher.fetch(url, FeedState())
    assert connect_log.to(except_port=server.port) == []
    assert listener.accepted == 0
    table.row(
        "Proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, lower-case too) set to a "
        "loopback listener",
        "1 permitted fetch + every SSRF vector", 1 + len(vectors),
        "permitted feed fetched directly; all vectors refused; 0 connections to the proxy",
    )


def test_private_networks_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYWATCH_ALLOW_PRIVATE_NETWORKS", raising=False)
    assert EnvSettings().allow_private_networks is False


async def test_bootstrap_wires_the_setting_into_the_fetcher(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, allow_private=False)
    db = Database.open(settings.database_path)
    try:
        async with running_poller(settings, db) as poller:
            guard = poller._fetcher.guard
            assert guard.allow_private_networks is False
            with pytest.raises(BlockedAddressError):
                guard.check_url("http://169.254.169.254/latest/meta-data/")
    finally:
        db.close()


async def test_addfeed_tells_the_admin_why(
    tmp_path: Path, server: FeedServer, listener: ConnectionCounter, connect_log: ConnectLog,
    table: Table,
) -> None:
    settings = make_settings(tmp_path, admins=[1], allow_private=False)
    db = Database.open(settings.database_path)
    port = listener.port
    server.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/")
    cases = [
        (f"http://127.0.0.1:{port}/feed", "127.0.0.1 is a loopback address"),
        (f"http://2130706433:{port}/feed", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        (f"http://[::ffff:10.0.0.5]:{port}/", "10.0.0.5, a private address"),
        (f"http://{_name(7)}:{port}/feed", "169.254.169.254 is a link-local address"),
        (server.url("/to-metadata", host=PUBLIC_HOST), "(reached by a redirect)"),
    ]
    try:
        async with FeedFetcher(
            OPTIONS, resolver=_resolver(), policy=loopback_port_is_public(server.port)
        ) as fetcher:
            service = ChatService(db, Poller(db, fetcher, Matcher(), settings), settings)
            for url, why in cases:
                raw = c.split_command(f"/addfeed {url}")
                assert raw is not None
                reply = (await service.handle(c.parse(raw), Caller(chat_id=1, user_id=1))).text
                assert reply.startswith("I won't fetch that address: refused: "), reply
                assert why in reply, reply
        assert db.list_feeds() == []
    finally:
        db.close()
    assert connect_log.to(except_port=server.port) == [] and listener.accepted == 0
    table.row(
        "/addfeed with forbidden URLs (literal, decimal, metadata, mapped, DNS name, redirect)",
        "service layer, admin caller", len(cases),
        "every reply says “I won't fetch that address: refused: <ip> is <reason>”; "
        "0 feeds added, 0 connections",
    )
