"""The shortcuts of issue 18 give exactly what the slow paths give.

* ``plain_text(x, limit)`` parses a long field only until it has more than ``limit``
  characters of text: its result must equal cutting the whole field's text.
* ``plain_text`` strips a fragment of plain tags and entities with a regular
  expression, and folds whitespace with ``str.split``: it must give what the HTML
  parser and ``\\s+`` give.
* ``parsing.fastpath`` reads plain RSS 2.0 / Atom through lxml: on every document of
  the feedparser corpus where it answers, ``parse_feed`` must give the same feed title
  and link and the same items (keys, titles, links, dates, summaries, sources) as with
  feedparser alone; where it does not answer, feedparser reads the document.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ParseError
from bot.parsing import fastpath
from bot.parsing.feeds import ParsedFeed, _replace_doctype_without_entities, parse_feed
from bot.parsing.normalize import _clean_char, _TextExtractor, plain_text, truncate

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "feedparser"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

_PIECES = st.sampled_from([
    "word ", "Café ", "  ", "\n", "<p>", "</p>", "<br/>", "<b>", "</b>", "<script>x<y</script>",
    "<style>p{}</style>", "&amp;", "&lt;", "&#8230;", "&nbsp;", "&am", "<a href=\"x>y\">",
    "</a>", "<!-- c -->", "<", ">", "&", "\u202e", "\x00", "<div", " class='q'>", "</div>",
    # Markup-heavy pieces, so the first piece parsed often holds less text than kept.
    '<span class="a-long-class-name-for-the-styling-of-this-word">', "</span>",
    '<img src="https://img.example.test/a/very/long/path/to/a/picture.jpg" alt="">',
    "<script>" + "var x = 1;" * 30 + "</script>",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, min_size=0, max_size=800), st.integers(min_value=1, max_value=80))
def test_plain_text_with_a_limit_equals_cutting_the_whole_text(
    pieces: list[str], limit: int
) -> None:
    raw = "".join(pieces)
    whole = plain_text(raw)
    assert plain_text(raw, limit=limit) == (truncate(whole, limit) if len(whole) > limit
                                            else whole)


def test_a_long_description_is_not_parsed_whole() -> None:
    # The tail is an unclosed comment: parsed, it would swallow nothing before it but
    # cost the whole 2 MB; the text kept comes from the first paragraphs.
    raw = "<p>" + "news of the day " * 200 + "</p>" + "<b>x</b>" * 250_000
    assert plain_text(raw, limit=1000) == truncate(plain_text(raw[:10_000]), 1000)


_MARKUP = st.sampled_from([
    "word ", "Putin ", "é", " ", "\n", "\t", "\u00a0", "\u2003", "\x1c", "\u200b", "\u202e",
    "<p>", "</p>", "<P class='x'>", "<br>", "<br/>", "<br />", "<hr/>", "<div\n>", "</div>",
    "<a href=\"http://e.test/?a=1&amp;b=2\">", "</a>", "<img src=a.png>", "<td>", "</td>",
    "<o:p>", "</o:p>", "<p:x>", "<x-y>", "</x-y>", "<a title='x>y'>", "<tag attr=\"a'b\">",
    "&amp;", "&lt;", "&gt;", "&#39;", "&#x27;", "&nbsp;", "&notin;", "&noti", "&amp", "& ",
    "<", ">", "a<b", "<3", "</ >", "<!-- c -->", "<script>x<y</script>", "<title>t</title>",
])


def _parsed_whole(raw: str, limit: int | None) -> str:
    """The slow path: the whole fragment through the HTML parser, then ``\\s+``."""
    extractor = _TextExtractor()
    extractor.feed(raw)
    extractor.close()
    text = "".join(_clean_char(c) for c in "".join(extractor.parts))
    text = re.sub(r"\s+", " ", text).strip()
    return truncate(text, limit) if limit is not None and len(text) > limit else text


@settings(max_examples=500, deadline=None)
@given(st.lists(_MARKUP, min_size=0, max_size=300),
       st.one_of(st.none(), st.integers(min_value=1, max_value=120)))
def test_plain_text_of_markup_equals_the_html_parsers(pieces: list[str], limit: int | None) -> None:
    raw = "".join(pieces)
    assert plain_text(raw, limit=limit) == _parsed_whole(raw, limit)


def test_str_split_folds_exactly_the_whitespace_that_backslash_s_matches() -> None:
    for code in range(sys.maxunicode + 1):
        text = f"a{chr(code)}{chr(code)}b{chr(code)}"
        assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip(), hex(code)


def _parsed(body: bytes, fast: bool) -> ParsedFeed | str:
    try:
        return parse_feed(body, {"content-type": "application/xml"},
                          "http://example.test/feed", now=NOW, use_fast_path=fast)
    except ParseError as exc:
        return str(exc)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared feedparser corpus is absent")
def test_fast_path_agrees_with_feedparser_on_the_corpus() -> None:
    answered = 0
    for path in sorted(CORPUS.rglob("*.xml")):
        body = path.read_bytes()
        if fastpath.entries(_replace_doctype_without_entities(body)[1], "application/xml") is None:
            continue
        answered += 1
        fast, slow = _parsed(body, True), _parsed(body, False)
        assert isinstance(fast, ParsedFeed) and isinstance(slow, ParsedFeed), path
        assert (fast.title, fast.link) == (slow.title, slow.link), path
        assert fast.items == slow.items, path
    assert answered >= 100  # the fast path is exercised, not skipped everywhere


@pytest.mark.parametrize("body", [
    b"<rss version='2.0'><channel><title>t</title><item><title>a&nbsp;b</title></item>"
    b"</channel></rss>",  # an HTML entity: not XML, feedparser's loose parser reads it
    b"<rss version='2.0'><channel><item><title>a</title>",  # truncated
    b"<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel><item>"
    b"<title>caf\xe9</title></item></channel></rss>",
    b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
    b"xmlns='http://purl.org/rss/1.0/'><item><title>r</title></item></rdf:RDF>",
    # A C1 control, written in UTF-8 or as a reference, and bytes that are not UTF-8:
    # feedparser repairs or decodes them.
    "<rss version='2.0'><channel><item><title>caf\u00e9 \u0085</title></item></channel></rss>"
    .encode(),
    b"<rss version='2.0'><channel><item><title>a&#x85;b</title></item></channel></rss>",
    b"<rss version='2.0'><channel><item><title>caf\xe9</title></item></channel></rss>",
    b"<rss version='2.0'><channel><item><title>a</title><media:title "
    b"xmlns:media='http://search.yahoo.com/mrss/'>m</media:title></item></channel></rss>",
])
def test_what_the_fast_path_does_not_read_goes_to_feedparser_and_keeps_its_items(
    body: bytes,
) -> None:
    assert fastpath.entries(body, "application/xml") is None
    fed = parse_feed(body, {}, "http://example.test/feed", now=NOW)
    assert len(fed.items) == 1


def test_the_bots_process_loads_lxml_only_to_parse() -> None:
    feed = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            b"<title>F</title><item><title>One</title><guid>1</guid></item></channel></rss>")
    # The parse pool's worker parses; the bot's process only names the job and
    # receives its result, so it is spared lxml (about 6 MB; issue 18).
    script = (
        "import sys, pickle; import bot.bootstrap, bot.pipeline; "
        "assert 'lxml' not in sys.modules, 'imported'; "
        "from bot.parse_worker import parse_and_read; "
        f"p = parse_and_read({feed!r}, {{}}, 'https://n.test/f'); "
        "pickle.loads(pickle.dumps(p)); "
        "assert p.items and 'lxml' in sys.modules, 'not parsed by the fast path'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
