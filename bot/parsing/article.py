"""An article's title and main text from a web page (pure: bytes in, text out).

``/track URL`` seeds a storyline from the page a link points at. The main text
is found by readability-lxml (the page's navigation, comments and footers are
left out); datelines, bylines and agency credits ("MOSCOW (AP) —", "By Jane Doe",
"(Reuters) -", "Reporting by ...") are removed so they never seed a storyline
as if they were what it is about. Nothing here fetches: the bot's guarded
fetcher does that (SSRF rules, size cap, deadline).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import lxml.html
from lxml.etree import ParserError
from readability import Document

from bot.errors import ParseError
from bot.parsing.normalize import plain_text

MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 200
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", ""})

AGENCIES = r"(?:AP|AFP|Reuters|dpa|DPA|Xinhua|UPI|Bloomberg|TASS|ANSA|EFE|PA|CNN|BBC)"
_DASH = r"[—–-]{1,2}"
# "MOSCOW (AP) — ", "BEIJING, Sept 18 (Reuters) - ", "WASHINGTON — "
_DATELINE = re.compile(
    rf"^\s*[A-Z][A-Z.'’\- ]{{1,40}}(?:,\s*[A-Z][A-Za-z]{{2,8}}\.?\s+\d{{1,2}})?"
    rf"\s*(?:\({AGENCIES}\)\s*)?{_DASH}\s+"
)
_CREDIT = re.compile(rf"\s*\({AGENCIES}\)\s*{_DASH}?\s*")
_BYLINE = re.compile(
    r"^\s*(?:By|BY|Reporting by|Writing by|Editing by|Additional reporting by)\s+[^\n]{0,120}$"
)
_TRAILER = re.compile(r"\s*\((?:Reporting|Writing|Editing) by [^)]{0,300}\)\s*$")


def strip_bylines(text: str) -> str:
    """``text`` without datelines, bylines and agency credits, line by line."""
    kept: list[str] = []
    for line in text.splitlines():
        if _BYLINE.match(line):
            continue
        line = _DATELINE.sub("", line, count=1)
        line = _CREDIT.sub(" ", line)
        line = _TRAILER.sub("", line)
        if line.strip():
            kept.append(line.strip())
    return "\n".join(kept)


def _decode(body: bytes, content_type: str) -> str:
    """The page as text: the charset the server names, else UTF-8, else Windows-1252
    (what browsers fall back to), so a page never fails on its encoding."""
    m = re.search(r"charset=[\"']?([\w.:-]{1,40})", content_type, re.I)
    for charset in ([m.group(1)] if m else []) + ["utf-8"]:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("cp1252", errors="replace")


def extract_article(body: bytes, headers: Mapping[str, str]) -> tuple[str, str]:
    """``(title, main text)`` of an HTML page; ParseError if there is no article to read."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in HTML_TYPES:
        raise ParseError(f"that link is not a web page (it is {ctype[:60]})")
    if not body.strip():
        raise ParseError("that page is empty")
    try:
        doc = Document(_decode(body, headers.get("content-type", "")))
        title = doc.short_title() or ""
        tree = lxml.html.fromstring(doc.summary(html_partial=True))
    except (ParserError, ValueError, TypeError) as exc:
        raise ParseError(f"could not read that page ({type(exc).__name__})") from None
    blocks = [b.text_content() for b in tree.iter("p", "h1", "h2", "h3", "li", "blockquote")]
    raw = "\n".join(blocks) if blocks else tree.text_content()
    text = strip_bylines("\n".join(" ".join(line.split()) for line in raw.splitlines()))
    title = plain_text(title, limit=MAX_TITLE_CHARS)
    if not text and not title:
        raise ParseError("found no article text on that page")
    return title, text[:MAX_TEXT_CHARS]
