"""Feed bytes to normalised items: RSS, Atom and RDF through feedparser.

``parse_feed`` is a pure, top-level function of picklable arguments so the pipeline
can run it in a ProcessPoolExecutor (feedparser costs tens of milliseconds of CPU per
feed). It hands feedparser a BytesIO, never a string: given a string, feedparser would
fetch it as a URL or open it as a file path.

XML entities: feedparser drops entity declarations it considers unsafe but keeps
"simple" ones and expands them itself when it falls back to its loose parser, with no
limit: a 300 KB document with one 20 KB entity used 100,000 times becomes 2 GB of text.
External entities are off in its SAX parser, but a DOCTYPE can still name an external
DTD. So this module replaces feedparser's DOCTYPE handling: the whole prolog (DOCTYPE,
internal subset, entity declarations) is dropped before parsing. Feeds never need
custom entities; the price is that a reference to one stays as literal text.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from bot.errors import ParseError
from bot.models import Item
from bot.parsing import fastpath
from bot.parsing.normalize import canonical_url, item_key, plain_text, truncate
from bot.wire import by_fields

TITLE_LIMIT = 300
SUMMARY_LIMIT = 1000
#: Prefix of the summary used as the title of an entry that has none.
FALLBACK_TITLE_LIMIT = 120
SOURCE_LIMIT = 200
#: Publication dates further in the future than this are replaced by ``now``.
FUTURE_TOLERANCE = timedelta(hours=1)
#: Dates before this are misreadings (feedparser takes a bare "1400" or "+1400"
#: for a year); the entry counts as undated.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: Raw text kept per field before markup is stripped: enough for any real title
#: or summary after its tags go, and a 10 MB title costs no more than this.
RAW_TEXT_FACTOR = 20


@by_fields
@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What a feed document contains, normalised. ``bozo_reason`` names a problem
    feedparser recovered from (ill-formed XML, wrong encoding), for diagnostics."""

    title: str | None
    items: tuple[Item, ...]
    bozo_reason: str | None
    link: str | None = None
    skipped: int = 0
    """Entries past ``max_items`` (the oldest), not turned into items."""


# --- hardening feedparser's DOCTYPE handling ------------------------------------------

_FIRST_ELEMENT = re.compile(rb"<\w")
_XML_DECLARATION = re.compile(rb"\s*<\?xml[^>]*\?>")


def _replace_doctype_without_entities(data: bytes) -> tuple[str | None, bytes, dict[str, str]]:
    """Stand-in for ``feedparser.api.replace_doctype``: keeps only the XML declaration
    of the prolog, so no DOCTYPE, internal subset or entity declaration reaches either
    of feedparser's parsers, and the loose parser gets no entities to expand."""
    match = _FIRST_ELEMENT.search(data)
    if match is None:
        return None, data, {}
    head, rest = data[: match.start()], data[match.start() :]
    version = "rss091n" if b"netscape" in head.lower() and b"<!doctype" in head.lower() else None
    declaration = _XML_DECLARATION.match(head)
    kept = declaration.group(0) if declaration else b""
    return version, kept + rest, {}


@functools.cache
def _feedparser() -> Any:
    """feedparser, imported on first use with its DOCTYPE handling replaced.

    Imported late: with the lxml fast path most feeds never need it, and it
    costs a parse worker (and the bot, which never parses) about 13 MB."""
    import feedparser  # type: ignore[import-untyped,unused-ignore]
    import feedparser.api  # type: ignore[import-untyped,unused-ignore]

    # Fail loudly rather than parse unsafely if feedparser's layout changes.
    if not callable(getattr(feedparser.api, "replace_doctype", None)):
        raise RuntimeError("feedparser.api.replace_doctype is gone: review bot/parsing/feeds.py")
    feedparser.api.replace_doctype = _replace_doctype_without_entities
    return feedparser


# --- a stray bad byte in UTF-8 ------------------------------------------------------

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_UTF8_NAMES = frozenset({"utf-8", "utf8"})


def repair_utf8(body: bytes, content_type: str) -> bytes:
    """A UTF-8 document with a few invalid bytes, with each bad byte replaced by
    U+FFFD; any other body unchanged.

    feedparser decodes a body that is not valid UTF-8 wholesale as windows-1252,
    so one stray byte turns every "Café" into "CafÃ©". The body is repaired only
    when it claims UTF-8 (or claims nothing), and when it is UTF-8 by the
    evidence: it holds at least as many valid multi-byte sequences as bad bytes.
    A Latin-1 body mislabelled UTF-8 has none, and is left to feedparser.
    """
    if body.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return body
    declared = [m.group(1).decode("ascii").lower() for m in [_XML_ENCODING.match(body[:512])] if m]
    header = _CHARSET.search(content_type)
    if header:
        declared.append(header.group(1).lower())
    if any(name not in _UTF8_NAMES for name in declared):
        return body
    try:
        body.decode("utf-8")
        return body
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F and ch != "\ufffd")
    return text.encode("utf-8") if good >= bad else body


# --- entries -> items --------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _published(entry: Mapping[str, Any], now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed is None:
            continue
        try:
            # feedparser gives struct_time in UTC; leap seconds (60, 61) are clamped.
            year, month, day, hour, minute, second = (int(v) for v in parsed[:6])
            when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            continue
        if when < EARLIEST:
            continue  # a misread date ("+1400" as the year 1400), not an old article
        return now if when > now + FUTURE_TOLERANCE else when
    return None


def _entry_link(entry: Mapping[str, Any], base: str) -> str | None:
    candidates: list[str] = []
    link = _text(entry.get("link"))
    if link:
        candidates.append(link)
    for alt in entry.get("links") or ():
        if isinstance(alt, Mapping) and alt.get("rel", "alternate") == "alternate":
            href = _text(alt.get("href"))
            if href:
                candidates.append(href)
    for candidate in candidates:
        try:
            absolute = urljoin(base, candidate.strip())
        except ValueError:
            continue
        canonical = canonical_url(absolute)
        if canonical is not None:
            return canonical
    return None


def _entry_summary(entry: Mapping[str, Any]) -> str:
    raw = _text(entry.get("summary"))
    if not raw:
        for content in entry.get("content") or ():
            if isinstance(content, Mapping) and _text(content.get("value")):
                raw = content["value"]
                break
    return plain_text(_cut_raw(raw, SUMMARY_LIMIT), limit=SUMMARY_LIMIT)


def _cut_raw(raw: str | None, limit: int) -> str | None:
    """``raw`` cut before stripping markup: the text kept is ``limit`` characters,
    but markup can be many times that; a huge field is never processed whole."""
    cap = limit * RAW_TEXT_FACTOR
    return raw[:cap] if raw is not None and len(raw) > cap else raw


def _author_organisation(entry: Mapping[str, Any]) -> str | None:
    """"Jane Doe, Associated Press" -> "Associated Press". A single word after the
    comma is taken only in capitals (AP, AFP): "Doe, Jane" is a name, not an outlet."""
    detail = entry.get("author_detail")
    name = _text(detail.get("name")) if isinstance(detail, Mapping) else None
    if not name or "," not in name:
        return None
    org = name.rsplit(",", 1)[1].strip()
    return org if len(org.split()) >= 2 or (org.isupper() and len(org) >= 2) else None


def item_outlet(entry: Mapping[str, Any]) -> str | None:
    """The outlet that published this item, when the feed says so: an aggregator's
    ``<source>``, ``dc:publisher``, or the author's organisation."""
    src = entry.get("source")
    candidates = [
        _text(src.get("title")) if isinstance(src, Mapping) else None,
        _text(entry.get("publisher")),
        _author_organisation(entry),
    ]
    for raw in candidates:
        name = plain_text(raw, limit=SOURCE_LIMIT) if raw else ""
        if name:
            return name
    return None


def _to_item(entry: Mapping[str, Any], *, base: str, source: str, now: datetime) -> Item | None:
    raw_title = _text(entry.get("title"))
    summary = _entry_summary(entry)
    link = _entry_link(entry, base)
    published = _published(entry, now)
    guid = _text(entry.get("id"))
    title = plain_text(_cut_raw(raw_title, TITLE_LIMIT), limit=TITLE_LIMIT)
    if not title:
        title = truncate(summary, FALLBACK_TITLE_LIMIT) if summary else ""
    if not title and not link and not (guid and guid.strip()):
        return None  # nothing to show and nothing to identify it by
    key = item_key(guid, link, title, published)
    return Item(
        key=key,
        title=title or link or "(untitled)",
        summary=summary,
        link=link,
        published=published,
        source=item_outlet(entry) or source,
    )


def _bozo_reason(result: Mapping[str, Any]) -> str | None:
    if not result.get("bozo"):
        return None
    exc = result.get("bozo_exception")
    if exc is None:
        return "ill-formed feed"
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return truncate(text, 200)


def _not_a_feed(body: bytes, headers: Mapping[str, str], bozo: str | None) -> ParseError:
    if not body.strip():
        return ParseError("the server sent an empty body, not a feed")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    start = body[:2048].lstrip().lower()
    if content_type in ("text/html", "application/xhtml+xml") or start.startswith(
        (b"<!doctype html", b"<html")
    ):
        return ParseError("this is a web page (HTML), not a feed: look for its RSS or Atom link")
    detail = f" ({bozo})" if bozo else ""
    return ParseError(f"no RSS, Atom or RDF feed found in the response{detail}")


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    *,
    now: datetime | None = None,
    max_items: int | None = None,
    use_fast_path: bool = True,
) -> ParsedFeed:
    """Parse a feed document into items.

    ``headers`` are the response headers (lowercase keys; Content-Type helps decoding);
    ``url`` is the final URL, the base for relative links and the fallback source name.
    ``now`` (default: the current time) bounds publication dates in the future.
    ``max_items`` keeps only the newest entries (by date; undated ones in document
    order after them), so a feed listing 200,000 entries costs no more than the cap.
    Plain well-formed RSS 2.0 and Atom are read through lxml (``parsing.fastpath``),
    everything else through feedparser; ``use_fast_path=False`` forces feedparser.
    Raises ParseError when the body holds no feed (an HTML page, an empty or truncated
    document), with a message a user can act on.
    """
    current = now if now is not None else datetime.now(UTC)
    lowered = {k.lower(): v for k, v in headers.items()}
    # No Content-Location: feedparser would resolve RSS guids against it as if they
    # were URLs, changing item keys whenever the feed URL changes. Links are resolved
    # against ``url`` here instead.
    feed_headers: dict[str, str] = {}
    for name in ("content-type", "content-language"):
        if name in lowered:
            feed_headers[name] = lowered[name]
    body = repair_utf8(body, lowered.get("content-type", ""))
    fast = fastpath.entries(
        _replace_doctype_without_entities(body)[1], lowered.get("content-type", "")
    ) if use_fast_path else None
    feed_info: Mapping[str, Any]
    entries: list[Any]
    if fast is not None:
        bozo = None
        feed_info, entries = fast
    else:
        try:
            result = _feedparser().parse(
                io.BytesIO(body),
                response_headers=feed_headers,
                sanitize_html=False,
                resolve_relative_uris=False,
            )
        except Exception as exc:  # feedparser recovers from nearly everything; not this
            raise ParseError(f"the feed could not be parsed ({type(exc).__name__})") from None
        bozo = _bozo_reason(result)
        feed_info = result.get("feed") or {}
        entries = result.get("entries") or []
    feed_title = _cut_raw(_text(feed_info.get("title")), SOURCE_LIMIT)
    title = plain_text(feed_title, limit=SOURCE_LIMIT) or None
    if not entries and title is None:
        raise _not_a_feed(body, lowered, bozo)
    source = title or urlsplit(url).hostname or "unknown source"
    entries = [e for e in entries if isinstance(e, Mapping)]
    skipped = 0
    if max_items is not None and len(entries) > max_items:
        skipped = len(entries) - max_items
        entries = newest(entries, max_items, current)
    items: list[Item] = []
    seen: set[str] = set()
    for entry in entries:
        item = _to_item(entry, base=url, source=source, now=current)
        if item is None or item.key in seen:
            continue  # feeds repeat entries; the first one wins
        seen.add(item.key)
        items.append(item)
    site = _text(feed_info.get("link"))
    return ParsedFeed(
        title=title,
        items=tuple(items),
        bozo_reason=bozo,
        link=canonical_url(urljoin(url, site)) if site else None,
        skipped=skipped,
    )


def newest(entries: list[Mapping[str, Any]], n: int, now: datetime) -> list[Mapping[str, Any]]:
    """The ``n`` newest entries, in document order; undated entries rank after dated
    ones, earlier in the document first (feeds list newest first)."""
    oldest = datetime.min.replace(tzinfo=UTC)

    def rank(index: int) -> tuple[datetime, int]:
        return _published(entries[index], now) or oldest, -index

    keep = sorted(sorted(range(len(entries)), key=rank, reverse=True)[:n])
    return [entries[i] for i in keep]
