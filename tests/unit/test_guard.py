"""Unit tests for the SSRF guard: pure address and URL checks, no network."""

from __future__ import annotations

import ipaddress
import random
import socket

import httpcore
import httpx
import pytest

from bot.errors import BlockedAddressError, FetchError
from bot.fetching.guard import (
    Guard,
    GuardedNetworkBackend,
    GuardedTransport,
    LinearPool,
    StaticResolver,
    is_forbidden_address,
    parse_numeric_ipv4,
    redact_url,
)

FORBIDDEN = [
    # IPv4 classics
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.5",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    # IPv6
    "::",
    "::1",
    "fe80::1",
    "fe80::a:b:c:d",
    "fec0::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "ff02::1",
    "ff05::2",
    "2001:db8::1",
    "100::1",
    # IPv4 hidden in IPv6
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.5",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::ffff:0:192.168.0.1",  # SIIT translated
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",  # IPv4-compatible, even public: obsolete form
    "64:ff9b::127.0.0.1",  # NAT64
    "64:ff9b::a00:5",
    "64:ff9b::169.254.169.254",
    "64:ff9b:1::1",  # local-use NAT64, always
    "64:ff9b:1::808:808",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:5::1",  # 6to4 of 10.0.0.5
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001::1",
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses_are_refused(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is None


def test_scoped_ipv6_is_refused() -> None:
    assert is_forbidden_address(ipaddress.IPv6Address("fe80::1%eth0")) is not None


def test_reason_names_the_embedded_address() -> None:
    reason = is_forbidden_address(ipaddress.ip_address("::ffff:10.0.0.5"))
    assert reason is not None and "10.0.0.5" in reason and "private" in reason


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("3232235777", "192.168.1.1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_ipv4_forms_parse_like_inet_aton(host: str, expected: str) -> None:
    assert parse_numeric_ipv4(host) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "10.1"])
def test_numeric_forms_agree_with_inet_aton(host: str) -> None:
    assert parse_numeric_ipv4(host) == ipaddress.IPv4Address(socket.inet_aton(host))


@pytest.mark.parametrize("host", ["example.com", "feeds.example.test", "1.2.3.example", "x1"])
def test_names_are_not_numeric(host: str) -> None:
    assert parse_numeric_ipv4(host) is None


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.2.3.256", "08.1.1.1", "1.1.65536"])
def test_invalid_numeric_hosts_raise(host: str) -> None:
    with pytest.raises(ValueError):
        parse_numeric_ipv4(host)


GUARD = Guard()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.0.1.:8080/feed",
        "http://0/",
        "http://10.0.0.5/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.1.2/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]:8080/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00::1]/",
        "https://3232235777/",
    ],
)
def test_check_url_refuses_forbidden_literals(url: str) -> None:
    with pytest.raises(BlockedAddressError, match=r"^refused: "):
        GUARD.check_url(url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/feed", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.com/feed", "only http and https"),
        ("http:///feed", "no host"),
        ("http://user:secret@example.com/feed", "user name or password"),
        ("http://user@example.com/feed", "user name or password"),
        ("http://example.com:25/", "port 25"),
        ("http://example.com:6667/", "port 6667"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://1.2.3.4.5/", "not a valid address"),
        ("http://999.1.1.1/", "not a valid address"),
    ],
)
def test_check_url_refuses_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(BlockedAddressError, match=fragment):
        GUARD.check_url(url)


def test_credentials_never_appear_in_errors() -> None:
    with pytest.raises(BlockedAddressError) as caught:
        GUARD.check_url("https://alice:hunter2@example.com/feed?token=abc")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caught.value.url
    assert "token=abc" not in caught.value.url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/feed", "http://example.com/feed"),
        ("HTTPS://Example.COM/Feed?a=1", "https://example.com/Feed?a=1"),
        ("http://8.8.8.8:8080/rss", "http://8.8.8.8:8080/rss"),
        ("http://134744072/rss", "http://8.8.8.8/rss"),  # decimal form normalised
        ("http://0x08080808:81/", "http://8.8.8.8:81/"),
        ("http://[2606:4700:4700::1111]/", "http://[2606:4700:4700::1111]/"),
        ("  https://example.com/x  ", "https://example.com/x"),
    ],
)
def test_check_url_accepts_and_normalises_public_urls(url: str, expected: str) -> None:
    assert str(GUARD.check_url(url)) == expected


def test_allow_private_networks_skips_address_checks_only() -> None:
    lenient = Guard(allow_private_networks=True)
    assert str(lenient.check_url("http://127.0.0.1:8080/f")) == "http://127.0.0.1:8080/f"
    assert str(lenient.check_url("http://2130706433/")) == "http://127.0.0.1/"
    with pytest.raises(BlockedAddressError):
        lenient.check_url("file:///etc/passwd")
    with pytest.raises(BlockedAddressError):
        lenient.check_url("http://u:p@127.0.0.1/")


def test_policy_override_is_consulted_with_the_port() -> None:
    def policy(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str | None:
        if ip == ipaddress.ip_address("127.0.0.1") and port == 8081:
            return None
        return is_forbidden_address(ip)

    guard = Guard(policy=policy)
    guard.check_url("http://127.0.0.1:8081/")
    with pytest.raises(BlockedAddressError):
        guard.check_url("http://127.0.0.1:8082/")


async def test_resolve_checks_every_address() -> None:
    guard = Guard(resolver=StaticResolver({"mixed.test": ["8.8.8.8", "10.0.0.5"]}))
    with pytest.raises(BlockedAddressError, match=r"10\.0\.0\.5 is a private address"):
        await guard.resolve("mixed.test", 80)


async def test_resolve_returns_vetted_addresses() -> None:
    guard = Guard(resolver=StaticResolver({"ok.test": ["8.8.8.8", "2606:4700::1"]}))
    assert [str(a) for a in await guard.resolve("OK.test.", 443)] == ["8.8.8.8", "2606:4700::1"]


async def test_resolve_literal_ip_skips_the_resolver() -> None:
    guard = Guard(resolver=StaticResolver({}))
    with pytest.raises(BlockedAddressError):
        await guard.resolve("127.0.0.1", 80)
    assert [str(a) for a in await guard.resolve("8.8.8.8", 80)] == ["8.8.8.8"]


async def test_unknown_name_is_a_fetch_error() -> None:
    guard = Guard(resolver=StaticResolver({}))
    with pytest.raises(FetchError, match=r"could not resolve host nowhere\.test"):
        await guard.resolve("nowhere.test", 80)


async def test_resolver_returning_nothing_is_an_error() -> None:
    guard = Guard(resolver=StaticResolver({"empty.test": []}))
    with pytest.raises(FetchError, match="could not resolve"):
        await guard.resolve("empty.test", 80)


class _RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records where the guarded backend really connects; never opens a socket."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **kwargs: object
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        raise httpcore.ConnectError("recorded")

    async def sleep(self, seconds: float) -> None:
        return None


async def test_backend_connects_to_the_checked_address_not_the_name() -> None:
    inner = _RecordingBackend()
    guard = Guard(resolver=StaticResolver({"feeds.example.test": ["8.8.4.4", "8.8.8.8"]}))
    backend = GuardedNetworkBackend(guard, inner)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("feeds.example.test", 443)
    # Both vetted addresses tried in order, never the name (no second DNS lookup).
    assert inner.connected == [("8.8.4.4", 443), ("8.8.8.8", 443)]


async def test_backend_refuses_before_connecting() -> None:
    inner = _RecordingBackend()
    guard = Guard(resolver=StaticResolver({"rebind.test": ["127.0.0.1"]}))
    backend = GuardedNetworkBackend(guard, inner)
    with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1 is a loopback address"):
        await backend.connect_tcp("rebind.test", 80)
    assert inner.connected == []


async def test_backend_refuses_unix_sockets() -> None:
    backend = GuardedNetworkBackend(Guard(allow_private_networks=True), _RecordingBackend())
    with pytest.raises(BlockedAddressError):
        await backend.connect_unix_socket("/var/run/docker.sock")


async def test_transport_uses_the_guarded_backend() -> None:
    # Pins the private httpx seam (``_pool``) the transport relies on.
    import ssl

    transport = GuardedTransport(
        Guard(), ssl_context=ssl.create_default_context(), limits=httpx.Limits()
    )
    pool = transport._pool
    assert isinstance(pool, LinearPool)
    assert isinstance(pool._network_backend, GuardedNetworkBackend)
    await transport.aclose()


async def test_transport_rechecks_every_request() -> None:
    import ssl

    transport = GuardedTransport(
        Guard(resolver=StaticResolver({})),
        ssl_context=ssl.create_default_context(),
        limits=httpx.Limits(),
    )
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        with pytest.raises(BlockedAddressError):
            await client.get("http://169.254.169.254/latest/meta-data/")
        with pytest.raises(BlockedAddressError):
            await client.get("http://2130706433/")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@example.com/feed?key=s3cret#x", "https://example.com/feed?…"),
        ("http://example.com:8080/rss", "http://example.com:8080/rss"),
        ("http://[::1]:81/", "http://[::1]:81/"),
        ("http://example.com:bad/", "(invalid URL)"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


class _FakeConnection:
    """A pooled connection's state, as the pool's bookkeeping asks for it."""

    calls = 0  # is_idle calls, over all fakes

    def __init__(self, name: str, origin: str, state: dict[str, bool]) -> None:
        self.name, self.origin, self.state = name, origin, state

    def is_closed(self) -> bool:
        return self.state["closed"]

    def has_expired(self) -> bool:
        return self.state["expired"]

    def is_idle(self) -> bool:
        _FakeConnection.calls += 1
        return self.state["idle"]

    def is_available(self) -> bool:
        return self.state["available"]

    def can_handle_request(self, origin: object) -> bool:
        return origin == self.origin


class _FakeRequest:
    def __init__(self, origin: str, queued: bool) -> None:
        self.request = type("R", (), {"url": type("U", (), {"origin": origin})()})()
        self.queued, self.connection = queued, None

    def is_queued(self) -> bool:
        return self.queued

    def assign_to_connection(self, connection: object) -> None:
        self.connection = connection


def _assign(pool_class: type[httpcore.AsyncConnectionPool], seed: int) -> tuple[object, ...]:
    rng = random.Random(seed)
    keys = ("closed", "expired", "idle", "available")
    pool = pool_class(max_connections=rng.randint(1, 8),
                      max_keepalive_connections=rng.randint(0, 8))
    made: list[str] = []

    def create_connection(origin: object) -> _FakeConnection:
        made.append(str(origin))
        return _FakeConnection(f"new{len(made)}", str(origin), dict.fromkeys(keys, False))

    pool.create_connection = create_connection  # type: ignore[method-assign]
    pool._connections = [  # type: ignore[assignment]
        _FakeConnection(f"c{k}", rng.choice("ab"),
                        {key: rng.random() < 0.3 for key in keys})
        for k in range(rng.randint(0, 10))]
    requests = [_FakeRequest(rng.choice("ab"), rng.random() < 0.7)
                for _ in range(rng.randint(0, 10))]
    pool._requests = requests  # type: ignore[assignment]
    closing = pool._assign_requests_to_connections()
    return ([c.name for c in closing],  # type: ignore[attr-defined]
            [c.name for c in pool._connections],  # type: ignore[attr-defined]
            [getattr(r.connection, "name", None) for r in requests], made)


def test_the_linear_pool_decides_as_httpcores_own_with_fewer_idle_checks() -> None:
    # LinearPool overrides a private httpcore method: on 500 random pools (closed,
    # expired, idle, busy connections; queued and running requests; two origins) it
    # closes, keeps, assigns and creates exactly as httpcore's does, with under half
    # its ``is_idle`` calls (httpcore's grow with the square of the connections).
    linear_calls = httpcore_calls = 0
    for seed in range(500):
        _FakeConnection.calls = 0
        theirs = _assign(httpcore.AsyncConnectionPool, seed)
        httpcore_calls += _FakeConnection.calls
        _FakeConnection.calls = 0
        ours = _assign(LinearPool, seed)
        linear_calls += _FakeConnection.calls
        assert ours == theirs, seed
    assert linear_calls * 2 < httpcore_calls
