"""OPML feed lists, read and written: bytes in, feeds out, and back.

Pure: no I/O, no database. :func:`read_opml` takes an uploaded or given file and
returns the feeds it lists, or raises :class:`bot.errors.OpmlError` with a message
the person who gave the file can act on; :func:`write_opml` writes an OPML 2.0
document of the watched feeds.

Reading is untrusted input handled safely. The file goes to defusedxml (on the
standard library's expat) with ``forbid_dtd=True``: any DOCTYPE is refused before a
single entity is declared, so entity expansion (billion laughs, quadratic blow-up)
and external entities or DTDs (file or network reads) cannot happen at all; OPML
never needs a DOCTYPE, so refusing every one costs nothing. defusedxml rather than
lxml with ``resolve_entities=False``: lxml would still parse the internal subset and
leave the DOCTYPE check to us afterwards, while defusedxml stops at the parser, and
it is a small pure-Python package. The size (:data:`MAX_OPML_BYTES`) is checked
before parsing and the outline count (:data:`MAX_OUTLINES`) before any feed is
taken.

Folders (outlines without ``xmlUrl``) are flattened: every outline with an
``xmlUrl``, however deep, is one feed, with its ``title`` (or ``text``) kept.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # builds documents; parsing goes through defusedxml
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml import ElementTree as SafeET

from bot.errors import OpmlError

MAX_OPML_BYTES = 1024 * 1024
"""Largest file taken (1 MB); a list of 2,000 feeds is about 300 KB."""
MAX_OUTLINES = 2000
"""Most ``<outline>`` elements (folders included) in one file."""
MAX_TITLE_CHARS = 300

# Characters XML 1.0 cannot carry at all; a feed title holding one would make the
# exported file unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One feed of a list: its address as written in the file, and its title."""

    url: str
    title: str | None = None


def clean_title(title: str | None) -> str | None:
    """One line, no characters XML cannot hold, at most :data:`MAX_TITLE_CHARS`."""
    if title is None:
        return None
    text = " ".join(_NOT_XML.sub(" ", title).split())[:MAX_TITLE_CHARS]
    return text or None


def _attr(element: ET.Element, name: str) -> str | None:
    """An attribute by name, ignoring case (``xmlUrl``, ``xmlurl`` and ``XMLURL`` occur)."""
    wanted = name.lower()
    for key, value in element.attrib.items():
        if key.lower() == wanted:
            return value
    return None


def read_opml(data: bytes) -> list[OpmlFeed]:
    """The feeds an OPML file lists, in file order (duplicates included).

    Raises OpmlError when the file is too large, is not XML, carries a DOCTYPE or
    entities, is not OPML, lists more than :data:`MAX_OUTLINES` outlines, or lists no
    feed at all.
    """
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(
            f"the file is {len(data):,} bytes; the limit is {MAX_OPML_BYTES:,} (1 MB). "
            "Split the list into smaller files."
        )
    if not data.strip():
        raise OpmlError("the file is empty; an OPML file of feeds was expected")
    root = _parse(data)
    if root.tag != "opml":
        raise OpmlError(
            f"this is not an OPML file: its root element is <{_short_tag(root.tag)}>, not "
            "<opml>" + (" (to add one feed, give its address instead)"
                        if _short_tag(root.tag) in ("rss", "feed", "RDF") else "")
        )
    body = root.find("body")
    if body is None:
        raise OpmlError("this OPML file has no <body>, so it lists no feeds")
    outlines = sum(1 for _ in root.iter("outline"))
    if outlines > MAX_OUTLINES:
        raise OpmlError(
            f"the file has {outlines:,} outlines; the limit is {MAX_OUTLINES:,}. "
            "Split the list into smaller files."
        )
    feeds = []
    for outline in body.iter("outline"):
        url = _attr(outline, "xmlUrl")
        if url is None:
            continue  # a folder (its children are taken on their own) or a plain link
        url = url.strip()
        title = clean_title(_attr(outline, "title") or _attr(outline, "text"))
        # An untitled feed is written with its address as text (OPML requires text).
        feeds.append(OpmlFeed(url, None if title == url else title))
    if not feeds:
        raise OpmlError("this OPML file lists no feeds (no <outline> has an xmlUrl)")
    return feeds


def _short_tag(tag: str) -> str:
    # "{http://www.w3.org/2005/Atom}feed" -> "feed"
    return tag.rsplit("}", 1)[-1][:40]


def _parse(data: bytes) -> ET.Element:
    try:
        root = SafeET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DTDForbidden:
        raise OpmlError(
            "refused: the file has a DOCTYPE declaration. OPML needs none, and a DOCTYPE "
            "is how XML entity attacks (entity expansion, external files) are made"
        ) from None
    except EntitiesForbidden:
        raise OpmlError("refused: the file declares XML entities; OPML needs none") from None
    except DefusedXmlException:
        raise OpmlError("refused: the file refers to external XML resources") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise OpmlError(
            f"this is not an OPML file: it is not well-formed XML (line {line}, "
            f"column {column + 1})"
        ) from None
    return root


def write_opml(feeds: Iterable[OpmlFeed], *, title: str, created: datetime) -> bytes:
    """An OPML 2.0 document listing ``feeds`` flat, each with ``type="rss"``, its
    address and its title (``text`` is required by OPML; without a title it is the
    address)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = clean_title(title) or "Feeds"
    ET.SubElement(head, "dateCreated").text = format_datetime(created, usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for feed in feeds:
        name = clean_title(feed.title)
        attrs = {"type": "rss", "text": name or clean_title(feed.url) or feed.url}
        if name:
            attrs["title"] = name
        attrs["xmlUrl"] = _NOT_XML.sub("", feed.url)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
