"""SSRF guard: which URLs and addresses the fetcher may reach, enforced at connect time.

Users type feed URLs, so a URL is untrusted input that can point at the bot's own
machine, its cloud metadata service or the private network behind it. Checking the
URL's host name alone is not enough: DNS can answer differently on the second lookup
(rebinding), and numeric spellings such as ``http://2130706433/`` or ``http://127.1/``
mean 127.0.0.1 to the C resolver. So the guard works at three levels:

* :meth:`Guard.check_url` refuses anything but plain http(s) URLs without credentials,
  rewrites numeric IPv4 spellings to dotted quads, and checks literal addresses early
  so the user gets a clear message;
* :class:`GuardedNetworkBackend` is the httpcore network backend of the shared client:
  every TCP connection resolves the host itself, checks EVERY address, and connects to
  one of the addresses it checked (never resolving twice), while TLS SNI and the Host
  header keep using the host name;
* :class:`GuardedTransport` plugs that backend into httpx and re-checks each request,
  so a redirect hop is checked exactly like the first URL.

Resolution and policy are injectable (``resolver``, ``policy``) so tests can map test
host names to 127.0.0.1 and decide which loopback ports count as "public" without any
traffic leaving the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import select
import socket
import ssl
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpcore
import httpx

from bot.errors import BlockedAddressError, FetchError
from bot.fetching.streams import AsyncioBackend

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Resolves a host name to its addresses: ``await resolver(host, port)``.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

#: Decides whether an address may be reached: returns a reason to refuse, or None.
AddressPolicy = Callable[[IPAddress, int], str | None]

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Ports the WHATWG Fetch standard refuses ("bad ports"): a feed never lives there, and
# talking HTTP to SMTP, IRC, LDAP... is the classic way to smuggle commands via SSRF.
BAD_PORTS = frozenset(
    {
        1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87,
        95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139,
        143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548,
        554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659,
        4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697,
        10080,
    }
)  # fmt: skip

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match gives the reason. The generic "not globally
# routable" fallback below catches whatever these named ranges miss.
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), 'an unspecified ("this network") address'),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)

_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "the unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("fc00::/7"), "a private (unique local) address"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("2001::/32"), "a Teredo tunnel address"),
)

# IPv6 ranges that carry an IPv4 address; each is judged by the IPv4 address it embeds.
_MAPPED = _V6("::ffff:0:0/96")  # IPv4-mapped
_TRANSLATED = _V6("::ffff:0:0:0/96")  # SIIT IPv4-translated
_COMPATIBLE = _V6("::/96")  # deprecated IPv4-compatible
_NAT64 = _V6("64:ff9b::/96")  # well-known NAT64 prefix
_SIX_TO_FOUR = _V6("2002::/16")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, and the form's name, if any."""
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _MAPPED:
        return low32, "IPv4-mapped"
    if ip in _TRANSLATED:
        return low32, "IPv4-translated"
    if ip in _NAT64:
        return low32, "NAT64"
    if ip in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF), "6to4"
    if ip in _COMPATIBLE and value > 1:
        return low32, "IPv4-compatible"
    return None


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for net, reason in _V4_RANGES:
        if ip in net:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_v4(ip)
    if embedded is not None:
        v4, form = embedded
        article = "a" if form in ("6to4", "NAT64") else "an"
        inner = _v4_reason(v4)
        if inner is not None:
            return f"{article} {form} form of {v4}, {inner}"
        # A public IPv4 address behind a translation prefix is how IPv6-only hosts
        # reach IPv4 sites, so the IPv4 address's verdict stands.
        if form in ("IPv4-mapped", "NAT64", "6to4"):
            return None
        return f"an obsolete {form} address"
    if ip.teredo is not None:
        # Teredo is refused outright; name the embedded client when it is itself bad.
        client = ip.teredo[1]
        inner = _v4_reason(client)
        if inner is not None:
            return f"a Teredo tunnel address for {client}, {inner}"
    for net, reason in _V6_RANGES:
        if ip in net:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def is_forbidden_address(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be reached (e.g. ``"a private address"``), or None if it may.

    Refuses loopback, private, link-local (169.254.169.254 included), CGNAT
    100.64.0.0/10, multicast, unspecified, reserved and documentation ranges, and the
    same addresses hidden in IPv6 forms: IPv4-mapped ``::ffff:a.b.c.d``, NAT64
    ``64:ff9b::/96`` (and all of the local-use ``64:ff9b:1::/48``), 6to4 ``2002::/16``,
    Teredo ``2001::/32`` (always refused) and IPv4-compatible ``::a.b.c.d``.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    if ip.scope_id:
        # A zone index only makes sense on link-local networks.
        return "a scoped (link-local) address"
    return _v6_reason(ip)


def default_policy(ip: IPAddress, port: int) -> str | None:
    """The production policy: the port does not matter, the address does."""
    return is_forbidden_address(ip)


def refusal_message(ip: IPAddress, reason: str) -> str:
    """The user-facing sentence for a refused address; for loopback and private ones it
    names the setting that allows them (a feed on the same host or an intranet)."""
    hint = ""
    if "loopback" in reason or "private" in reason:
        hint = " (STORYWATCH_ALLOW_PRIVATE_NETWORKS=true allows loopback and private addresses)"
    return f"refused: {ip} is {reason}{hint}"


# --- URL checks ----------------------------------------------------------------------

_NUMBER_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


def _parse_ipv4_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part.startswith("0"):
        try:
            return int(part, 8)
        except ValueError:
            return None
    return int(part, 10)


def parse_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse an IPv4 host the way browsers and ``inet_aton`` do, or None if ``host``
    does not end in a number (it is then a name).

    Accepts decimal (``2130706433``), hex (``0x7f000001``), octal (``0177.0.0.1``) and
    short forms (``127.1``). Raises ValueError for a host that ends in a number but is
    not a valid address (``1.2.3.4.5``, ``999.1.1.1``): resolvers would still guess.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot ("127.0.0.1.") names the same address
    if not parts or not _NUMBER_PART.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMBER_PART.match(p) for p in parts):
        raise ValueError("not a valid IPv4 address")
    numbers = [_parse_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        raise ValueError("not a valid IPv4 address")
    values = typing.cast(list[int], numbers)
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        raise ValueError("not a valid IPv4 address")
    address = last
    for i, n in enumerate(head):
        address += n << (8 * (3 - i))
    return ipaddress.IPv4Address(address)


def redact_url(url: str) -> str:
    """``url`` without user name, password, query or fragment: safe for messages and logs.

    Query strings carry API keys and feed tokens as often as userinfo carries passwords.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if parts.query:
        shown += "?…"
    return shown[:200]


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def system_resolver(host: str, port: int) -> Sequence[IPAddress]:
    """Resolve ``host`` with the event loop's ``getaddrinfo`` (runs in a thread)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(sockaddr[0]), None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class StaticResolver:
    """A resolver from a fixed mapping, for tests: ``{"feeds.example.test": ["127.0.0.1"]}``.

    Unknown names fail like a DNS miss, so a test can never reach the real DNS.
    """

    mapping: typing.Mapping[str, Sequence[str]]

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        try:
            addresses = self.mapping[host.lower().rstrip(".")]
        except KeyError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return [ipaddress.ip_address(a) for a in addresses]


# URLs a guard remembers as passed: about 430 bytes each, so at most about 1.8 MB.
_PASSED_MEMO = 4096


@dataclass(frozen=True, slots=True)
class Guard:
    """The SSRF policy in one object: which URLs are acceptable, and which addresses.

    ``allow_private_networks`` skips address checks (tests serving on 127.0.0.1, or an
    operator who really wants an intranet feed); URL checks (scheme, credentials, port)
    always apply.
    """

    allow_private_networks: bool = False
    resolver: Resolver = field(default=system_resolver)
    policy: AddressPolicy = field(default=default_policy)
    _passed: dict[str, httpx.URL] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """Validate ``url`` and return it as an ``httpx.URL`` safe to request.

        Numeric IPv4 spellings are rewritten to dotted quads, so what is checked is what
        is connected to. Raises BlockedAddressError with a message a user can read.
        """
        text = str(url).strip()
        # The check reads the text and this guard's fields only, so a URL passed
        # recently gives what it gave: each fetch checks its URL, then the transport
        # checks the request's again (about a tenth of a pass of 304s, issue 18).
        checked = self._passed.get(text)
        if checked is None:
            checked = self._check_url(text)
            if len(self._passed) >= _PASSED_MEMO:
                # The newest entry makes room, not the oldest: a pass visits every
                # feed in turn, and evicting the oldest would evict each URL just
                # before its next visit once there are more feeds than entries. This
                # way the first entries keep hitting, and the URL just checked stays
                # for the transport's second check of the same request.
                self._passed.popitem()
            self._passed[text] = checked
        return checked

    def _check_url(self, text: str) -> httpx.URL:
        given = text

        def refused(reason: str) -> BlockedAddressError:
            # Redacted only for a refusal: most URLs checked pass.
            return BlockedAddressError(f"refused: {reason}", url=redact_url(given))

        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise refused("that is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            what = f"{scheme}: URLs" if scheme else "URLs without http:// or https://"
            raise refused(f"only http and https feeds are supported, not {what}")
        if "@" in parts.netloc:
            raise refused("URLs with a user name or password are not supported")
        host = parts.hostname or ""
        if not host:
            raise refused(f"{redact_url(given)} has no host name")
        if ":" not in host:
            try:
                numeric = parse_numeric_ipv4(host)
            except ValueError:
                raise refused(f"{host} is not a valid address") from None
            if numeric is not None and str(numeric) != host:
                netloc = str(numeric) if port is None else f"{numeric}:{port}"
                text = urlunsplit(_replace_netloc(parts, netloc))
        try:
            checked = httpx.URL(text)
        except (httpx.InvalidURL, ValueError):
            raise refused(f"{redact_url(given)} is not a valid URL") from None
        try:
            # httpx decodes an "xn--" host lazily, and idna raises on a broken one.
            checked_host = checked.host
        except UnicodeError:
            raise refused(
                f"{host} is not a valid internationalised host name (bad punycode)"
            ) from None
        effective_port = checked.port or _default_port(scheme)
        if not 0 < effective_port < 65536:
            raise refused(f"port {effective_port} is not valid")
        if effective_port in BAD_PORTS:
            raise refused(f"port {effective_port} is not used for web feeds")
        literal = _literal_ip(checked_host)
        if literal is not None:
            try:
                self.check_address(literal, effective_port)
            except BlockedAddressError as exc:
                exc.url = redact_url(given)
                raise
        return checked

    def check_address(self, ip: IPAddress, port: int, *, url: str = "") -> None:
        """Raise BlockedAddressError if the policy refuses ``ip`` on ``port``."""
        if self.allow_private_networks:
            return
        reason = self.policy(ip, port)
        if reason is not None:
            raise BlockedAddressError(refusal_message(ip, reason), url=url)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and check every address; all must pass or none is used.

        Refusing the whole name when one address is bad closes the trick of publishing
        one public and one private address and waiting for the connect to pick the latter.
        """
        literal = _literal_ip(host)
        if literal is not None:
            addresses: Sequence[IPAddress] = [literal]
        else:
            try:
                addresses = await self.resolver(host, port)
            except (socket.gaierror, UnicodeError):
                raise FetchError(f"could not resolve host {host}", url=host) from None
            except OSError as exc:
                raise FetchError(
                    f"could not resolve host {host}: {exc.strerror or 'lookup failed'}", url=host
                ) from None
        if not addresses:
            raise FetchError(f"could not resolve host {host}", url=host)
        for ip in addresses:
            self.check_address(ip, port, url=host)
        return list(addresses)


def _replace_netloc(parts: SplitResult, netloc: str) -> SplitResult:
    return parts._replace(netloc=netloc)


# --- httpcore / httpx seams ----------------------------------------------------------


def _has_pending_input(sock: socket.socket | None) -> bool:
    """Whether reading ``sock`` now would not block: data, or the peer's close. A
    socket that is gone counts as readable (its next read is the end)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _IdleCheckedStream(httpcore.AsyncNetworkStream):
    """A connection whose "is the idle server gone?" check is one ``poll()``.

    httpcore asks every pooled connection that on every request it queues or
    finishes; through anyio each answer rebuilt a dict of socket attributes, and
    that was the largest single cost of a pass of 304s (issue 18). The raw socket
    is looked up once, at connect, and survives TLS (the same descriptor)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, sock: socket.socket | None) -> None:
        self._inner = inner
        self._sock = sock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _IdleCheckedStream(tls, self._sock)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _has_pending_input(self._sock)
        return self._inner.get_extra_info(info)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the guard checked.

    httpcore hands us the origin's host name; we resolve it ourselves, check every
    address, then connect to a checked IP. httpcore still uses the host name for TLS
    SNI and certificate checks, and httpx for the Host header.
    """

    def __init__(self, guard: Guard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner if inner is not None else AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.resolve(host, port)
        last_error: Exception | None = None
        for ip in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _IdleCheckedStream(stream, stream.get_extra_info("socket"))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("refused: Unix sockets are never fetched", url=path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_MISSING = object()


def _keepalive_lapsed(connection: httpcore.AsyncConnectionInterface, now: float) -> bool | None:
    """Whether ``connection``'s keep-alive time ran out, told without touching its socket;
    None when this httpcore's connection does not show that (only ``has_expired()`` can
    tell, and for an idle HTTP/1.1 connection it polls the socket)."""
    if not isinstance(connection, httpcore.AsyncHTTPConnection):
        return None
    inner = getattr(connection, "_connection", _MISSING)
    if inner is None:
        # Connecting, or failed to: httpcore answers from a flag, no socket yet.
        return connection.has_expired()
    if not isinstance(inner, httpcore.AsyncHTTP11Connection):
        return None
    expire_at = getattr(inner, "_expire_at", _MISSING)
    if expire_at is None:
        return False
    if not isinstance(expire_at, int | float):
        return None
    return now > expire_at


class LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool, its bookkeeping linear in the number of connections,
    polling a socket only for the connection about to carry a request.

    httpcore 1.0's ``_assign_requests_to_connections`` runs whenever a request starts
    or ends. It counts the pool's connections by listing all of them once per idle
    connection, and lists the idle ones once per queued request: at 16 connections,
    hundreds of ``is_idle`` calls per request. Each count and list is made once here,
    and only where it is used.

    httpcore also asks every connection ``has_expired()`` on each of those passes, and
    for an idle HTTP/1.1 connection that is a ``poll()`` of its socket ("did the server
    hang up?"): 16 polls per pass, about 50 per request in a pass of 1,000 304s, 9% of
    its CPU (issue 18). Here every connection's keep-alive time is still checked on
    each pass (httpcore's ``_expire_at``, no system call), but the socket of an idle
    connection is polled only when it is about to be handed a request: found readable
    then, it is removed and closed and the next candidate is tried, so a connection
    the server closed is never reused. A server-closed idle connection nobody asks
    for stays in the pool, holding a slot, until its keep-alive time runs out or it
    is evicted (the first idle connection goes, unpolled: it is closed either way),
    where httpcore would have dropped it at once. All differences in decisions come
    from that (``tests/unit/test_guard.py`` compares them with httpcore's on the same
    pools, with and without such connections).
    A connection that does not show httpcore 1.0's HTTP/1.1 internals (another
    httpcore, HTTP/2) gets httpcore's full ``has_expired()`` on every pass.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        connections = self._connections
        now = time.monotonic()
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
                continue
            lapsed = _keepalive_lapsed(connection, now)
            if lapsed is None:
                lapsed = connection.has_expired()
            if lapsed or (
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing.append(connection)
        queued = [r for r in self._requests if r.is_queued()]
        # An HTTP/1.1 connection handed to a request stays idle, so "available", until
        # that request starts on it; httpcore would hand it to the next queued request
        # too, which then fails, retries and runs this bookkeeping again: about 2,700
        # retries in a pass of 1,000 304s (issue 18). Such connections are passed over.
        taken: set[httpcore.AsyncConnectionInterface] = set() if self._http2 or not queued \
            else {r.connection for r in self._requests if r.connection is not None}
        for pool_request in queued:
            origin = pool_request.request.url.origin
            available = self._reusable(origin, now, closing, taken)
            if available is not None:
                pool_request.assign_to_connection(available)
                if not self._http2:
                    taken.add(available)
                continue
            if len(connections) >= self._max_connections:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is None:
                    continue
                connections.remove(idle)
                closing.append(idle)
            connection = self.create_connection(origin)
            connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing

    def _reusable(
        self,
        origin: httpcore.Origin,
        now: float,
        closing: list[httpcore.AsyncConnectionInterface],
        taken: set[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first pooled connection not ``taken`` that can take a request for
        ``origin`` now, if any; those found closed by their server on the way are moved
        to ``closing``."""
        connections = self._connections
        while True:
            candidate = next(
                (c for c in connections if c not in taken
                 and c.can_handle_request(origin) and c.is_available()),
                None,
            )
            # Without a time-only answer, has_expired() already ran on this pass.
            if (
                candidate is None
                or _keepalive_lapsed(candidate, now) is None
                or not candidate.has_expired()
            ):
                return candidate
            connections.remove(candidate)
            closing.append(candidate)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections go through :class:`GuardedNetworkBackend`.

    Never uses a proxy (a proxy would resolve and connect on our behalf, bypassing the
    checks) and re-checks every request URL, whoever built the request.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(
            verify=ssl_context, trust_env=False, http1=True, http2=False, limits=limits
        )
        self._guard = guard
        # AsyncHTTPTransport has no network_backend parameter, so we replace the pool it
        # built with one made from the same arguments plus our backend. Nothing has
        # connected yet. (``_pool`` is private: pinned by tests/unit/test_guard.py.)
        self._pool = LinearPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(guard, network_backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        checked = self._guard.check_url(request.url)
        if checked != request.url:
            # A numeric spelling slipped past the caller: refuse rather than let the
            # system resolver interpret it.
            raise BlockedAddressError(
                f"refused: {redact_url(str(request.url))} must use a canonical address",
                url=redact_url(str(request.url)),
            )
        return await super().handle_async_request(request)
