"""Pure normalisation of feed values: canonical URLs, plain text and item keys.

Feeds say the same thing many ways: the same article with and without ``utm_source``,
titles with HTML entities and tags, entries without a guid. These functions turn each
into one stable form so that deduplication and matching compare like with like.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Query parameters that only say how a reader arrived, never what the page is.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "igshid", "mc_cid", "mc_eid", "mkt_tok", "_hsenc", "_hsmi", "ref", "ref_src",
        "ref_url", "cmpid", "ocid", "smid", "sr_share", "xtor", "at_medium", "at_campaign",
        "__twitter_impression", "_ga", "_gl", "oly_anon_id", "oly_enc_id", "vero_id",
        "cmp",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "itm_", "pk_", "mtm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_tracking(name: str) -> bool:
    key = unquote_plus(name).strip().lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def canonical_url(url: str | None) -> str | None:
    """The canonical form of an http(s) URL, or None for anything else.

    Lowercases scheme and host, drops user info, default ports, the fragment and
    tracking parameters (utm_*, fbclid, gclid, mc_cid, ref, cmpid, ocid...), and sorts
    the remaining parameters. Percent-encoding is kept as sent: decoding and
    re-encoding could change what the server sees.
    """
    if not url:
        return None
    # urlsplit drops tabs and newlines itself (as browsers do); other control
    # characters mean the value is not a URL at all.
    text = url.strip().replace("\t", "").replace("\r", "").replace("\n", "")
    if not text or _CONTROL.search(text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    host = host.rstrip(".") or host
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    pairs = [p for p in parts.query.split("&") if p and not _is_tracking(p.split("=", 1)[0])]
    pairs.sort()
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, "&".join(pairs), ""))


# --- plain text ----------------------------------------------------------------------

_SKIP_CONTENT = frozenset({"script", "style", "noscript", "template", "head", "title"})
# Tags that separate words: "<p>a</p><p>b</p>" must read "a b", not "ab".
_BREAKING = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "img", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td",
        "th", "tr", "ul",
    }
)  # fmt: skip
# Format characters that hide or reorder text (bidi overrides can spoof a headline);
# zero-width joiners stay because emoji sequences and some scripts need them.
_KEEP_FORMAT = frozenset({"\u200c", "\u200d"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_CONTENT:
            self._skipping.append(tag)
        elif tag in _BREAKING:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKING:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        elif tag in _BREAKING:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _clean_char(c: str) -> str:
    category = unicodedata.category(c)
    if category == "Cc":
        return " " if c in "\t\n\r\x0b\x0c" else ""
    if category in ("Cs", "Co", "Cn") or (category == "Cf" and c not in _KEEP_FORMAT):
        return ""
    return c


def plain_text(html_or_text: str | None, limit: int | None = None) -> str:
    """Visible text of an HTML fragment (or plain text): tags stripped, script and
    style contents dropped, entities decoded, control characters removed, whitespace
    folded. With ``limit``, cut at a word boundary and end with "…" (within ``limit``).
    """
    if not html_or_text:
        return ""
    text = html_or_text
    markup = "<" in text or "&" in text
    if markup:
        simple = _plain_simple(text, limit)
        if simple is not None:
            return simple
    if limit is not None and len(text) > _FIRST_STEP + limit * 3 // 2:
        return _plain_prefix(text, limit)
    if markup:
        extractor = _TextExtractor()
        extractor.feed(text)
        extractor.close()
        text = "".join(extractor.parts)
    text = _visible(text)
    if limit is not None and len(text) > limit:
        text = truncate(text, limit)
    return text


# A long field is parsed a piece at a time, and only until it has given more than
# ``limit`` characters of text: most of a 4 KB description is never parsed when
# 1,000 characters are kept (issue 18: plain_text was a quarter of a first pass).
_FIRST_STEP = 256


# A tag ``_TextExtractor`` reads no differently from a regular expression: a name of
# letters and digits, attributes holding no "<" or ">" (quoted or not).
_SIMPLE_TAG = re.compile(
    r"""<(/?)([A-Za-z][A-Za-z0-9]*)(?=[\s/>])(?:[^<>"']|"[^"<>]*"|'[^'<>]*')*>"""
)


def _simple_markup_text(html: str) -> str | None:
    """What ``_TextExtractor`` gives for a fragment of plain tags and entities, without
    its Python call per tag (issue 18: a first pass's largest parsing cost); ``None``
    when the fragment holds anything else (a comment, a script, a stray "<"), which
    the parser reads."""
    parts = _SIMPLE_TAG.split(html)  # text, "/" or "", tag name, text, ...
    texts = parts[0::3]
    if any("<" in t for t in texts):
        return None
    out = [unescape(texts[0])]
    for k in range(1, len(parts), 3):
        name = parts[k + 1].lower()
        if name in _SKIP_CONTENT:
            return None
        if name in _BREAKING:
            out.append(" ")
        out.append(unescape(parts[k + 2]))
    return "".join(out)


# The most text an entity cut short at the end of a piece can leave ("&CounterClockwise").
_ENTITY_TAIL = 34


def _plain_simple(raw: str, limit: int | None) -> str | None:
    """``plain_text(raw, limit)`` for a fragment of plain tags and entities, or
    ``None`` for any other (the parser reads those).

    With ``limit``, like ``_plain_prefix``, only growing pieces are read until they
    give enough text. A piece never ends inside a tag; an entity cut short at its end
    changes at most its last ``_ENTITY_TAIL`` characters of text, which are past the
    cut when the piece gives that much more than ``limit``."""
    step = len(raw) if limit is None else _FIRST_STEP + limit * 3 // 2
    while step < len(raw):
        end = step
        opened = raw.rfind("<", 0, step)
        if opened > raw.rfind(">", 0, step):
            end = opened  # the piece stops before a tag it would cut
        simple = _simple_markup_text(raw[:end])
        if simple is None:
            return None
        text = _visible(simple)
        if limit is not None and len(text) > limit + _ENTITY_TAIL:
            return truncate(text, limit)
        step *= 2
    simple = _simple_markup_text(raw)
    if simple is None:
        return None
    text = _visible(simple)
    return truncate(text, limit) if limit is not None and len(text) > limit else text


def _visible(text: str) -> str:
    text = "".join(_clean_char(c) for c in text) if not text.isprintable() else text
    # str.split() splits on exactly what r"\s+" matches (every code point checked),
    # and is several times faster on text of one word per space.
    return " ".join(text.split())


def _plain_prefix(raw: str, limit: int) -> str:
    """``plain_text(raw, limit)``, parsing no more of ``raw`` than it needs.

    The parser is fed growing pieces and never closed early, so what it has given
    so far is exactly the beginning of what the whole field gives (an unfinished tag
    or entity waits in its buffer); once that beginning is longer than ``limit``,
    the cut cannot depend on the rest."""
    extractor = _TextExtractor() if "<" in raw or "&" in raw else None
    fed, step = 0, _FIRST_STEP + limit * 3 // 2
    while fed < len(raw):
        piece = raw[fed : fed + step]
        fed += len(piece)
        step *= 2
        if extractor is not None:
            extractor.feed(piece)
        text = _visible("".join(extractor.parts) if extractor is not None else raw[:fed])
        if len(text) > limit + 1:
            return truncate(text, limit)
    if extractor is not None:
        extractor.close()
    text = _visible("".join(extractor.parts) if extractor is not None else raw)
    return truncate(text, limit) if len(text) > limit else text


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary, ending in "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    # Back up to the last space unless the cut already ends a word, or backing up
    # would throw away more than half the room.
    if not text[limit - 1].isspace() and space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—") + "…"


# --- item keys -----------------------------------------------------------------------

# Longer guids are hashed so keys stay index-friendly; the hash is just as stable.
MAX_GUID_LENGTH = 256


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def item_key(
    guid: str | None,
    link: str | None,
    title: str | None,
    published: datetime | None,
) -> str:
    """A stable deduplication key for a feed entry.

    ``"g:" + guid`` when the feed gives a non-blank guid (hashed as ``"g:sha256:..."``
    past 256 characters), else ``"u:" + canonical link``, else ``"h:" + sha256`` of the
    normalised title and publication time. Keys are unique within one feed; two feeds
    can share guids ("1", "2"...), so storage should scope them by feed.
    """
    if guid is not None and guid.strip():
        clean = guid.strip()
        if len(clean) > MAX_GUID_LENGTH:
            return "g:sha256:" + _sha256(clean)
        return "g:" + clean
    canonical = canonical_url(link)
    if canonical is not None:
        return "u:" + canonical
    normal_title = plain_text(title).casefold()
    when = published.astimezone(UTC).isoformat() if published is not None else ""
    return "h:" + _sha256(f"{normal_title}\n{when}")


def content_key(title: str, summary: str, link: str | None) -> str:
    """What an item is, as a hash: the same headline, summary and link give the
    same key whatever guid the feed gave them this time (feeds that mint new
    guids on every request). The link keeps apart a daily "Morning briefing"
    whose title and summary never change."""
    text = " ".join(f"{title}\n{summary}".split()).casefold()
    # 128 bits are plenty to tell one feed's items apart, and half the index size.
    return _sha256(f"{text}\n{link or ''}")[:32]
