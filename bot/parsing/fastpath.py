"""A fast path for plain, well-formed RSS 2.0 and Atom 1.0 documents, through lxml.

feedparser costs about 10 ms of CPU per 100 KB feed, most of it in Python callbacks
for every element and character run; lxml builds the same document's tree in C in
well under a millisecond. This module reads the handful of fields Storywatch uses
(``parsing.feeds._to_item``) from that tree and hands them on in the shape feedparser
gives them, so everything after parsing is shared and an item's key is the same
whichever path read it.

It answers only for documents it reads exactly as feedparser would; for anything
else :func:`entries` returns None and the caller uses feedparser: ill-formed XML,
entities (an undeclared ``&nbsp;`` is an XML error here), any encoding but UTF-8,
RDF, Atom 0.3, ``xml:base``, XHTML content, or a document with no entries. The corpus
agreement of the two paths is measured by ``bench/bench_parsers.py``.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC = "{http://purl.org/dc/elements/1.1/}"
DCTERMS = "{http://purl.org/dc/terms/}"

MEDIA = "{http://search.yahoo.com/mrss/}"
_RSS_IGNORED = frozenset({
    "category", "comments", "enclosure", DC + "subject", DC + "rights", DC + "language",
    "{http://wellformedweb.org/CommentAPI/}commentRss",
    "{http://purl.org/rss/1.0/modules/slash/}comments", MEDIA + "content", MEDIA + "thumbnail",
})
_ATOM_IGNORED = frozenset({ATOM + "category", ATOM + "contributor", ATOM + "rights"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
# U+0080-U+009F as UTF-8 writes them: searched in the bytes, where a scan for a
# character class in a decoded 100 kB feed cost ten times as much (issue 18).
_C1 = re.compile(rb"\xc2[\x80-\x9f]")
_C1_REFERENCE = re.compile(rb"&#(?:0*(?:12[89]|1[3-5][0-9])|[xX]0*[89][0-9a-fA-F]);")
_UTF8 = frozenset({"utf-8", "utf8"})
_HTML_TYPES = frozenset({"", "text/html", "application/xhtml+xml"})


@functools.cache
def _parser() -> Any:
    """No entities, no network, no DTD, and libxml2's limits on tree depth and text size.

    lxml is imported on the first parse, not with this module: the bot's own process
    imports the parsing package for the parse pool's job and its result, and only the
    pool's worker parses (lxml is about 6 MB in a fresh interpreter; issue 18)."""
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        recover=False, remove_comments=True, remove_pis=True,
    )


class _NotFast(Exception):
    """Something feedparser reads differently: use it instead."""


def _utf8_only(body: bytes, content_type: str) -> bool:
    declared = _DECLARED.match(body[:512])
    if declared and declared.group(1).decode("ascii").lower() not in _UTF8:
        return False
    charset = _CHARSET.search(content_type)
    if charset and charset.group(1).lower() not in _UTF8:
        return False
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        # C1 controls are windows-1252 punctuation mis-decoded; feedparser repairs them.
        if _C1.search(body) is not None:
            return False
    return _C1_REFERENCE.search(body) is None


_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}
_RFC822 = re.compile(
    r"(?:[A-Z][a-z]{2}, )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2})(?::(\d{2}))? "
    r"(GMT|UTC|UT|Z|[+-]\d{4})"
)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})"
)


def _offset(zone: str) -> timedelta:
    if zone in ("GMT", "UTC", "UT", "Z"):
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return -delta if zone[0] == "-" else delta


def _date(text: str | None) -> time.struct_time | None:
    """The two spellings real feeds use (RFC 822 in RSS, RFC 3339 in Atom), in UTC,
    as feedparser gives them; any other spelling is feedparser's to read."""
    if not text or not text.strip():
        return None
    value = text.strip()
    rfc = _RFC822.fullmatch(value)
    iso = None if rfc else _ISO.fullmatch(value)
    if rfc is not None and rfc.group(2) in _MONTHS:
        day, _, year, hour, minute, second, zone = rfc.groups()
        month = _MONTHS[rfc.group(2)]
    elif iso is not None:
        year, month_text, day, hour, minute, second, zone = iso.groups()
        month = int(month_text)
    else:
        raise _NotFast
    try:
        local = datetime(int(year), month, int(day), int(hour), int(minute),
                         int(second or 0), tzinfo=UTC)
    except ValueError:
        raise _NotFast from None  # a leap second or a 31 April: feedparser's rules
    return (local - _offset(zone)).timetuple()


def _text(el: Any) -> str:
    """The element's text; any child element means markup feedparser would keep."""
    if len(el):
        raise _NotFast
    return el.text or ""


def _author_name(raw: str) -> str:
    """``jane@example.com (Jane Doe)`` -> ``Jane Doe``, as feedparser splits it."""
    name = _EMAIL.sub("", raw).strip()
    if name.startswith("(") and name.endswith(")"):
        name = name[1:-1].strip()
    return name


def _ignored(el: Any) -> None:
    """An element feedparser keeps but Storywatch does not use: fine while it is a
    leaf (feedparser reads titles and links out of nested ones)."""
    if len(el):
        raise _NotFast


def _rss_item(item: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    guid_link: str | None = None
    for child in item:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == "title":
            entry["title"] = _text(child)
        elif tag == "link":
            entry["link"] = _text(child).strip()
        elif tag == "description":
            entry["summary"] = _text(child)
        elif tag == CONTENT_ENCODED:
            entry.setdefault("content", []).append({"value": _text(child)})
        elif tag == "guid":
            entry["id"] = _text(child)
            if child.get("isPermaLink", "true") == "true":
                guid_link = entry["id"].strip()
        elif tag == "pubDate" or tag == DCTERMS + "issued":
            entry.setdefault("published_parsed", _date(_text(child)))
        elif tag == DC + "date" or tag == DCTERMS + "modified":
            entry.setdefault("updated_parsed", _date(_text(child)))
        elif tag == DCTERMS + "created":
            entry.setdefault("created_parsed", _date(_text(child)))
        elif tag == "source":
            entry["source"] = {"title": _text(child)}
        elif tag == DC + "publisher":
            entry["publisher"] = _text(child)
        elif tag in ("author", DC + "creator"):
            entry.setdefault("author_detail", {"name": _author_name(_text(child))})
        elif tag in _RSS_IGNORED:
            _ignored(child)
        else:
            # feedparser maps many other elements onto the fields used here
            # (itunes:summary, media:title, dc:title, xhtml:body...): its call.
            raise _NotFast
    if guid_link and "link" not in entry:
        entry["link"] = guid_link  # a permalink guid is the link when there is none
    return entry


def _atom_text(el: Any) -> str:
    kind = el.get("type", "text").lower()
    if kind in ("xhtml", "application/xhtml+xml") or el.get("src") is not None:
        raise _NotFast
    return _text(el)


def _atom_links(parent: Any) -> tuple[str | None, list[dict[str, str]]]:
    link: str | None = None
    links: list[dict[str, str]] = []
    for el in parent.iterchildren(ATOM + "link"):
        if el.get("href") is None or len(el):
            raise _NotFast  # feedparser takes a link's text when it has no href
        href = el.get("href").strip()
        rel = el.get("rel", "alternate")
        links.append({"rel": rel, "href": href})
        if link is None and rel == "alternate" and el.get("type", "") in _HTML_TYPES and href:
            link = href
    return link, links


def _atom_entry(entry_el: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    link, links = _atom_links(entry_el)
    if link is not None:
        entry["link"] = link
    entry["links"] = links
    for child in entry_el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == ATOM + "title":
            entry["title"] = _atom_text(child)
        elif tag == ATOM + "id":
            entry["id"] = _text(child)
        elif tag == ATOM + "summary":
            entry["summary"] = _atom_text(child)
        elif tag == ATOM + "content":
            entry.setdefault("content", []).append({"value": _atom_text(child)})
        elif tag in (ATOM + "published", ATOM + "issued"):
            entry.setdefault("published_parsed", _date(_text(child)))
        elif tag in (ATOM + "updated", ATOM + "modified"):
            entry.setdefault("updated_parsed", _date(_text(child)))
        elif tag == ATOM + "source":
            title = child.find(ATOM + "title")
            entry["source"] = {"title": _atom_text(title) if title is not None else ""}
        elif tag == ATOM + "author":
            name = child.find(ATOM + "name")
            if name is not None:
                entry.setdefault("author_detail", {"name": _text(name).strip()})
        elif tag == ATOM + "link":
            continue  # read above
        elif tag in _ATOM_IGNORED:
            _ignored(child)
        else:
            raise _NotFast  # feedparser maps other elements onto the fields used here
    if "link" not in entry and entry.get("id", "").strip():
        entry["link"] = entry["id"].strip()  # feedparser's rule: the id is the link
    return entry


def entries(
    body: bytes, content_type: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """``(feed, entries)`` shaped like feedparser's, or None to use feedparser.

    ``body`` must already have its prolog made safe (no DOCTYPE: see
    ``parsing.feeds``)."""
    if not _utf8_only(body, content_type):
        return None
    from lxml import etree

    try:
        root = etree.fromstring(body, _parser())
        if root.tag == "rss":
            channel = root.find("channel")
            if channel is None or root.xpath("boolean(//@xml:base)"):
                return None
            feed: dict[str, Any] = {}
            title, link = channel.find("title"), channel.find("link")
            if title is not None:
                feed["title"] = _text(title)
            if link is not None:
                feed["link"] = _text(link).strip()
            found = [_rss_item(i) for i in channel.iterchildren("item")]
        elif root.tag == ATOM + "feed":
            if root.xpath("boolean(//@xml:base)"):
                return None
            feed = {}
            title = root.find(ATOM + "title")
            if title is not None:
                feed["title"] = _atom_text(title)
            site, _ = _atom_links(root)
            if site is not None:
                feed["link"] = site
            found = [_atom_entry(e) for e in root.iterchildren(ATOM + "entry")]
        else:
            return None
    except (etree.XMLSyntaxError, _NotFast, ValueError):
        return None
    return (feed, found) if found else None
