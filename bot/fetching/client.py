"""The feed fetcher: one shared httpx client behind the SSRF guard, with hard limits.

``FeedFetcher.fetch`` does one conditional GET and returns a :class:`FetchResult` or
raises a :class:`bot.errors.FetchError` subclass whose message a user can read. What it
guarantees, and why each point exists:

* one ``httpx.AsyncClient`` and one SSL context for the process (a client per request
  costs tens of milliseconds of CPU), HTTP/1.1, ``trust_env=False`` so proxy variables
  cannot route around the guard;
* every hop, redirects included, goes through :class:`bot.fetching.guard.Guard`;
  redirects are followed here, not by httpx, so each one is checked and counted;
* a total deadline per fetch, because per-operation timeouts never fire on a server
  that trickles one byte per second;
* the body is decompressed here, with a cap on the DECODED size applied while
  streaming, so a 50 KB gzip bomb cannot become gigabytes in memory;
* a global and a per-host concurrency limit, so one slow site cannot take every slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from bot.errors import (
    BlockedAddressError,
    DeadlineError,
    FetchError,
    HTTPStatusError,
    TooLargeError,
)
from bot.fetching.conditional import conditional_headers, parse_retry_after
from bot.fetching.guard import (
    AddressPolicy,
    Guard,
    GuardedTransport,
    Resolver,
    default_policy,
    redact_url,
    system_resolver,
)
from bot.models import FeedState
from bot.settings import FetchOptions

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
# Only codings we decode ourselves under the size cap (see _CappedDecoder).
ACCEPT_ENCODING = "gzip, deflate"
# "gzip, gzip" is legal HTTP; more layers than this is no real server.
MAX_STACKED_ENCODINGS = 3

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Bodies of 304s, redirects and error pages up to this size are read to their end so
# the connection goes back to the pool; httpcore closes a connection whose response
# was closed unread, which cost one new TCP (and TLS) connection per 304.
DRAIN_LIMIT = 64 * 1024


class RedirectError(FetchError):
    """Too many redirects, a redirect loop, or a redirect without a usable Location."""

    kind = "redirect"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one successful fetch (200 or 304).

    ``headers`` are the final response's, keys lowercased (repeated headers joined with
    ", "); ``body`` is decoded (no Content-Encoding left) and empty on 304.
    """

    not_modified: bool
    body: bytes
    headers: dict[str, str]
    final_url: str
    status: int
    etag: str | None
    last_modified: str | None

    @property
    def body_hash(self) -> str | None:
        """SHA-256 of the body, hex; None for a 304 (there is no body to compare)."""
        if self.not_modified:
            return None
        return hashlib.sha256(self.body).hexdigest()


class _CookiesWhenSet(httpx.Cookies):
    """httpx's cookie jar, handed a response only when the response sets a cookie.

    httpx passes every response to the jar, which first wraps it and its request in
    urllib objects: about a twelfth of a pass of 304s in a cProfile, though a 304 sets
    no cookie (issue 18). What is stored and sent back is the same.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _FeedClient(httpx.AsyncClient):
    """The shared client, its cookies kept in a :class:`_CookiesWhenSet`."""

    def __init__(self, *, cookies: Any = None, **options: Any) -> None:
        super().__init__(**options)
        # httpx's own __init__ fills the jar it would use; ``cookies`` goes to ours.
        self._jar = _CookiesWhenSet(cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _CookiesWhenSet(cookies)


class _HostSlots:
    """Per-host semaphores that disappear when no fetch uses them (no unbounded dict)."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        entry = self._slots.get(host)
        if entry is None:
            entry = (asyncio.Semaphore(self._per_host), [0])
            self._slots[host] = entry
        semaphore, users = entry
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._slots[host]

    def __len__(self) -> int:
        return len(self._slots)


class _CappedDecoder:
    """Undo one Content-Encoding (identity, gzip, deflate) without exceeding ``cap`` bytes.

    zlib is asked for at most ``cap - produced + 1`` bytes per call, so memory never
    holds more than the cap plus one chunk of input, however compressible the input.
    """

    def __init__(self, encoding: str, cap: int, *, url: str) -> None:
        self._url = url
        self._cap = cap
        self._produced = 0
        self._encoding = encoding
        self._first = True
        self._raw_seen = b""
        self._obj: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._obj = None
        elif encoding in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._obj = zlib.decompressobj()
        else:
            raise FetchError(
                f"the server sent an unsupported content encoding ({encoding[:40]})", url=url
            )

    def _too_large(self) -> TooLargeError:
        return TooLargeError(
            f"the feed is larger than the {self._cap:,}-byte limit (after decompression)",
            url=self._url,
        )

    def _count(self, out: bytes) -> bytes:
        self._produced += len(out)
        if self._produced > self._cap:
            raise self._too_large()
        return out

    def feed(self, data: bytes) -> bytes:
        if self._obj is None:
            return self._count(data)
        parts: list[bytes] = []
        while data:
            budget = self._cap - self._produced + 1  # >= 1: 0 would mean "unlimited"
            try:
                out = self._obj.decompress(data, budget)
            except zlib.error:
                if self._encoding == "deflate" and self._first:
                    # "deflate" is meant to be zlib-wrapped, but servers send raw deflate
                    # too; retry once as raw, as browsers and httpx do.
                    self._first = False
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise FetchError(
                    f"the server sent a corrupt {self._encoding} body", url=self._url
                ) from None
            self._first = False
            parts.append(self._count(out))
            if self._obj.eof:
                rest = self._obj.unused_data
                if self._encoding != "deflate" and rest.strip(b"\x00"):
                    # Concatenated gzip members are one valid gzip body.
                    self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                    continue
                break
            tail = self._obj.unconsumed_tail
            if not out and tail == data:
                break  # no progress possible: wait for more input
            data = tail
        return b"".join(parts)

    def flush(self) -> bytes:
        if self._obj is None:
            return b""
        return self._count(self._obj.flush())


class _DecoderChain:
    """Undo every Content-Encoding of a response: ``gzip, gzip`` means gzip applied
    twice, so the last one listed is undone first. Each stage is capped."""

    def __init__(self, header: str, cap: int, *, url: str) -> None:
        names = [n.strip() for n in header.split(",") if n.strip() not in ("", "identity")]
        if len(names) > MAX_STACKED_ENCODINGS:
            raise FetchError(
                f"the server stacked {len(names)} content encodings ({header[:60]}); "
                f"at most {MAX_STACKED_ENCODINGS} are decoded", url=url,
            )
        self._stages = [_CappedDecoder(n, cap, url=url) for n in reversed(names or [""])]

    def feed(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = stage.feed(data)
        return data

    def flush(self) -> bytes:
        pending = b""
        for stage in self._stages:
            pending = (stage.feed(pending) if pending else b"") + stage.flush()
        return pending


def _describe_transport_error(exc: httpx.HTTPError, host: str) -> str:
    """A short, secret-free sentence for a transport failure (no URL query, no trace)."""
    cause: BaseException | None = exc
    for _ in range(10):  # walk the cause chain, bounded in case of a cycle
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or "certificate verify failed"
            return f"TLS certificate of {host} was rejected ({detail})"
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "reason", None) or "handshake failed"
            return f"TLS connection to {host} failed ({str(reason).lower().replace('_', ' ')})"
        if isinstance(cause, ConnectionRefusedError):
            return f"{host} refused the connection"
        if isinstance(cause, ConnectionResetError):
            return f"{host} reset the connection"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting to {host}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out waiting for {host}"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to {host}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} closed the connection or sent a malformed HTTP response"
    if isinstance(exc, httpx.DecodingError):
        return f"{host} sent a body that could not be decoded"
    if isinstance(exc, httpx.NetworkError):
        return f"the connection to {host} failed"
    return f"the request to {host} failed ({type(exc).__name__})"


@contextmanager
def _mapped_errors(shown: str, host: str) -> Iterator[None]:
    """Turn httpx errors into FetchError and stamp our errors with the redacted URL."""
    try:
        yield
    except FetchError as exc:
        # Raised deep in the guard with only a host name to hand: give callers the URL.
        exc.url = shown
        raise
    except httpx.InvalidURL:
        # httpx reads a redirect's Location even with follow_redirects off, and some
        # (``data:...``, ``javascript:...``) fail there with InvalidURL, which is not
        # an httpx.HTTPError: without this it escaped fetch() as an internal error.
        raise RedirectError(f"{shown} redirected to an invalid URL", url=shown) from None
    except httpx.HTTPError as exc:
        raise FetchError(_describe_transport_error(exc, host), url=shown) from None
    except UnicodeError:
        # idna.IDNAError: httpx decodes a redirect's "xn--" host while reading the
        # Location, and a broken one raises there, before our guard sees the hop.
        raise BlockedAddressError(
            f"refused: {shown} redirected to a host name that is not a valid "
            "internationalised name (bad punycode)", url=shown,
        ) from None


async def _drain(response: httpx.Response) -> None:
    """Read a body nobody needs (304, redirect, error page) to its end, when it is
    small, so the connection is reused; a large or unsized one is left for
    ``aclose`` to cut, which closes the connection instead."""
    declared = response.headers.get("content-length", "")
    status = response.status_code
    no_body = status == 304 or 100 <= status < 200 or status == 204
    if not no_body and not (declared.isdigit() and int(declared) <= DRAIN_LIMIT):
        return
    read = 0
    try:
        async for raw in response.aiter_raw():
            read += len(raw)
            if read > DRAIN_LIMIT:
                return  # the server lied about the length; aclose() drops the connection
    except httpx.HTTPError:
        return  # the answer is already known; only the connection is lost


class FeedFetcher:
    """Fetches feeds through one shared, guarded httpx client. Use as an async context
    manager or call :meth:`aclose`.

    ``resolver`` and ``policy`` replace DNS resolution and the address policy (tests map
    ``feeds.example.test`` to 127.0.0.1 and declare one loopback port public);
    ``ssl_context`` replaces the default verifying context.
    """

    def __init__(
        self,
        options: FetchOptions,
        allow_private_networks: bool = False,
        *,
        resolver: Resolver | None = None,
        policy: AddressPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._options = options
        self.guard = Guard(
            allow_private_networks=allow_private_networks,
            resolver=resolver if resolver is not None else system_resolver,
            policy=policy if policy is not None else default_policy,
        )
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        limits = httpx.Limits(
            max_connections=options.concurrency,
            max_keepalive_connections=options.concurrency,
            keepalive_expiry=30.0,
        )
        self._client = _FeedClient(
            transport=GuardedTransport(self.guard, ssl_context=context, limits=limits),
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(
                options.deadline_seconds, connect=options.connect_timeout_seconds
            ),
            headers={
                "User-Agent": options.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self._global = asyncio.Semaphore(options.concurrency)
        self._hosts = _HostSlots(options.per_host)

    async def __aenter__(self) -> FeedFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared client and its connections."""
        await self._client.aclose()

    async def fetch(self, url: str, state: FeedState) -> FetchResult:
        """Conditionally GET ``url``; 200 and 304 return, everything else raises.

        Raises BlockedAddressError (guard), HTTPStatusError (other statuses, with
        ``retry_after``), RedirectError, TooLargeError, DeadlineError or FetchError
        (transport). The deadline starts once a concurrency slot is free: waiting for a
        slot is the bot being busy, not the feed being slow. The per-host slot is the
        first URL's host and is held across redirects.
        """
        first = self.guard.check_url(url)
        shown = redact_url(url)
        deadline = self._options.deadline_seconds
        async with self._hosts.hold(first.host), self._global:
            try:
                async with asyncio.timeout(deadline):
                    return await self._follow(first, state, shown)
            except TimeoutError:
                raise DeadlineError(
                    f"gave up on {shown} after {deadline:g} seconds", url=shown
                ) from None

    async def _follow(self, first: httpx.URL, state: FeedState, shown: str) -> FetchResult:
        headers = conditional_headers(state)
        current = first
        visited = {str(first)}
        max_redirects = self._options.max_redirects
        for hops in range(max_redirects + 1):
            with _mapped_errors(shown, current.host):
                request = self._client.build_request("GET", current, headers=headers)
                response = await self._client.send(request, stream=True)
                try:
                    if response.status_code not in REDIRECT_STATUSES:
                        return await self._finish(response, current, shown)
                    await _drain(response)
                    target = self._redirect_target(response, current, shown, hops)
                finally:
                    await response.aclose()
            if str(target) in visited:
                raise RedirectError(f"{shown} redirects in a loop", url=shown)
            visited.add(str(target))
            current = target
        raise RedirectError(
            f"{shown} redirected more than {max_redirects} times", url=shown
        )  # pragma: no cover - the loop returns or raises on its last hop

    def _redirect_target(
        self, response: httpx.Response, current: httpx.URL, shown: str, hops: int
    ) -> httpx.URL:
        location = response.headers.get("location", "").strip()
        if not location:
            raise RedirectError(
                f"{shown} answered HTTP {response.status_code} without a Location", url=shown
            )
        if hops >= self._options.max_redirects:
            raise RedirectError(
                f"{shown} redirected more than {self._options.max_redirects} times", url=shown
            )
        try:
            joined = current.join(location)
        except (httpx.InvalidURL, ValueError):
            raise RedirectError(f"{shown} redirected to an invalid URL", url=shown) from None
        try:
            return self.guard.check_url(joined)
        except BlockedAddressError as exc:
            raise BlockedAddressError(f"{exc} (reached by a redirect)", url=shown) from None

    async def _finish(
        self, response: httpx.Response, current: httpx.URL, shown: str
    ) -> FetchResult:
        status = response.status_code
        headers = {k.lower(): v for k, v in response.headers.items()}
        if status == 304:
            await _drain(response)
            return self._result(True, b"", headers, current, status)
        if status != 200:
            await _drain(response)
            retry_after = parse_retry_after(headers.get("retry-after"), now=datetime.now(UTC))
            # The reason phrase is server-chosen text: keep it short and printable.
            reason = "".join(c for c in response.reason_phrase[:60] if c.isprintable())
            raise HTTPStatusError(
                f"{shown} answered HTTP {status} {reason}".rstrip(),
                url=shown,
                status=status,
                retry_after=retry_after,
            )
        body = await self._read_body(response, headers, shown)
        return self._result(False, body, headers, current, status)

    async def _read_body(
        self, response: httpx.Response, headers: dict[str, str], shown: str
    ) -> bytes:
        cap = self._options.max_body_bytes
        encoding = headers.get("content-encoding", "").strip().lower()
        declared = headers.get("content-length", "")
        if encoding in ("", "identity") and declared.isdigit() and int(declared) > cap:
            raise TooLargeError(
                f"the feed is larger than the {cap:,}-byte limit ({int(declared):,} bytes)",
                url=shown,
            )
        decoder = _DecoderChain(encoding, cap, url=shown)
        chunks: list[bytes] = []
        wire = 0
        async for raw in response.aiter_raw():
            wire += len(raw)
            if wire > cap:
                # Compressed bytes that decode to nothing (garbage after the gzip end)
                # still cost bandwidth: cap them too.
                raise TooLargeError(f"the feed is larger than the {cap:,}-byte limit", url=shown)
            chunks.append(decoder.feed(raw))
        chunks.append(decoder.flush())
        return b"".join(chunks)

    @staticmethod
    def _result(
        not_modified: bool, body: bytes, headers: dict[str, str], url: httpx.URL, status: int
    ) -> FetchResult:
        return FetchResult(
            not_modified=not_modified,
            body=body,
            headers=headers,
            final_url=str(url),
            status=status,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
        )
