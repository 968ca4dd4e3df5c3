"""Unit tests for parse_feed: formats, normalisation, not-a-feed errors, XML attacks."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import feedparser.api  # type: ignore[import-untyped,unused-ignore]
import pytest

from bot.errors import ParseError
from bot.parsing import feeds
from bot.parsing.feeds import SUMMARY_LIMIT, ParsedFeed, parse_feed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RSS_HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}
FEED_URL = "https://news.example.test/feeds/world.xml"

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>World &amp; More</title>
  <link>https://news.example.test/</link>
  <description>News</description>
  <item>
    <title>Putin arrives in &lt;b&gt;China&lt;/b&gt;</title>
    <link>https://news.example.test/a/1?utm_source=rss&amp;id=1</link>
    <guid isPermaLink="false">story-1</guid>
    <description>&lt;p&gt;The visit &lt;script&gt;x()&lt;/script&gt;begins.&lt;/p&gt;</description>
    <pubDate>Tue, 30 Apr 2024 08:15:00 +0200</pubDate>
  </item>
  <item>
    <title>Second story</title>
    <link>/a/2</link>
    <pubDate>Tue, 30 Apr 2024 09:00:00 GMT</pubDate>
  </item>
  <item>
    <description>No title here, only a fairly long description that becomes the title.</description>
    <content:encoded><![CDATA[<p>Full body</p>]]></content:encoded>
  </item>
  <item>
    <title>Second story</title>
    <link>/a/2</link>
  </item>
  <item></item>
</channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">Atom &lt;i&gt;Wire&lt;/i&gt;</title>
  <id>urn:uuid:feed</id>
  <updated>2024-04-30T10:00:00Z</updated>
  <link href="https://atom.example.test/"/>
  <entry>
    <id>urn:uuid:1</id>
    <title>Atom entry one</title>
    <link rel="alternate" href="https://atom.example.test/e/1#top"/>
    <updated>2024-04-30T10:00:00Z</updated>
    <published>2024-04-30T09:30:00+01:00</published>
    <summary>Summary one</summary>
  </entry>
  <entry>
    <id>urn:uuid:2</id>
    <title>From the future</title>
    <link href="javascript:alert(1)"/>
    <updated>2099-01-01T00:00:00Z</updated>
    <content type="html">&lt;p&gt;Body &amp;amp; more&lt;/p&gt;</content>
  </entry>
</feed>
"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://rdf.example.test/">
    <title>RDF Site</title>
    <link>https://rdf.example.test/</link>
    <description>d</description>
  </channel>
  <item rdf:about="https://rdf.example.test/i/1">
    <title>RDF item</title>
    <link>https://rdf.example.test/i/1</link>
    <description>About RDF</description>
    <dc:date>2024-04-29T12:00:00Z</dc:date>
  </item>
</rdf:RDF>
"""


def test_rss() -> None:
    parsed = parse_feed(RSS, RSS_HEADERS, FEED_URL, now=NOW)
    assert parsed.title == "World & More"
    assert parsed.link == "https://news.example.test/"
    assert parsed.bozo_reason is None
    first, second, third = parsed.items  # duplicate and empty items dropped
    assert first.key == "g:story-1"
    assert first.title == "Putin arrives in China"
    assert first.summary == "The visit begins."
    assert first.link == "https://news.example.test/a/1?id=1"
    assert first.published == datetime(2024, 4, 30, 6, 15, tzinfo=UTC)
    assert first.source == "World & More"
    assert first.feed_id is None
    assert second.key == "u:https://news.example.test/a/2"  # relative link resolved
    assert second.link == "https://news.example.test/a/2"
    assert third.title.startswith("No title here")
    assert third.key.startswith("h:")
    assert third.link is None and third.published is None


def test_atom() -> None:
    parsed = parse_feed(
        ATOM, {"content-type": "application/atom+xml"}, "https://atom.example.test/f"
    )
    assert parsed.title == "Atom Wire"
    one, two = parsed.items
    assert one.key == "g:urn:uuid:1"
    assert one.link == "https://atom.example.test/e/1"
    assert one.published == datetime(2024, 4, 30, 8, 30, tzinfo=UTC)
    assert one.summary == "Summary one"
    assert two.link is None  # javascript: links never survive
    assert two.summary == "Body & more"


def test_atom_future_dates_are_clamped() -> None:
    parsed = parse_feed(ATOM, {}, "https://atom.example.test/f", now=NOW)
    assert parsed.items[1].published == NOW


def test_rdf() -> None:
    parsed = parse_feed(
        RDF, {"content-type": "application/rdf+xml"}, "https://rdf.example.test/rss"
    )
    assert parsed.title == "RDF Site"
    (item,) = parsed.items
    assert item.title == "RDF item"
    assert item.link == "https://rdf.example.test/i/1"
    assert item.published == datetime(2024, 4, 29, 12, tzinfo=UTC)


def test_empty_channel_is_a_valid_feed() -> None:
    body = b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    assert parse_feed(body, RSS_HEADERS, FEED_URL) == ParsedFeed("Quiet", (), None, None)


def test_source_falls_back_to_host() -> None:
    body = (
        b'<rss version="2.0"><channel><item><title>t</title><guid>1</guid></item></channel></rss>'
    )
    parsed = parse_feed(body, RSS_HEADERS, "https://host.example.test/rss")
    assert parsed.title is None
    assert parsed.items[0].source == "host.example.test"


def test_source_names_the_items_own_outlet_where_the_feed_says_it() -> None:
    body = b"""<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
      <title>Aggregator</title>
      <item><title>a</title><guid>a</guid><source url="https://r.example">Reuters</source></item>
      <item><title>b</title><guid>b</guid><dc:publisher>The Guardian</dc:publisher></item>
      <item><title>c</title><guid>c</guid>
        <author>j@x.test (Jane Doe, Associated Press)</author></item>
      <item><title>d</title><guid>d</guid><author>j@x.test (Doe, Jane)</author></item>
      <item><title>e</title><guid>e</guid><author>j@x.test (Jane Doe, AFP)</author></item>
      <item><title>f</title><guid>f</guid></item>
    </channel></rss>"""
    parsed = parse_feed(body, RSS_HEADERS, FEED_URL)
    assert [i.source for i in parsed.items] == [
        "Reuters", "The Guardian", "Associated Press", "Aggregator", "AFP", "Aggregator",
    ]


def test_summary_is_capped() -> None:
    long = "word " * 1000
    body = (
        f'<rss version="2.0"><channel><title>T</title><item><title>t</title>'
        f"<description>{long}</description></item></channel></rss>"
    ).encode()
    item = parse_feed(body, RSS_HEADERS, FEED_URL).items[0]
    assert len(item.summary) <= SUMMARY_LIMIT
    assert item.summary.endswith("…")


def test_ill_formed_feed_is_recovered_with_bozo_reason() -> None:
    body = (
        b'<rss version="2.0"><channel><title>Broken & co</title>'
        b"<item><title>A & B</title><guid>1</guid></item></channel>"
    )
    parsed = parse_feed(body, RSS_HEADERS, FEED_URL)
    assert parsed.bozo_reason is not None
    assert [i.title for i in parsed.items] == ["A & B"]


def test_latin1_declared_encoding() -> None:
    body = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
        "<title>Café</title><item><title>Ça va</title><guid>1</guid></item></channel></rss>"
    ).encode("iso-8859-1")
    parsed = parse_feed(body, {"content-type": "application/xml"}, FEED_URL)
    assert parsed.title == "Café" and parsed.items[0].title == "Ça va"


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (
            b"<!DOCTYPE html><html><head><title>Blog</title></head><body><h1>Hi</h1></body></html>",
            {"content-type": "text/html; charset=utf-8"},
            "web page",
        ),
        (b"<html><body><p>no doctype</p></body></html>", {}, "web page"),
        (b"", {}, "empty"),
        (b"   \n", {}, "empty"),
        (b'{"json": true}', {"content-type": "application/json"}, "no RSS, Atom or RDF"),
        (b'<rss version="2.0"><chan', {}, "no RSS, Atom or RDF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", {"content-type": "image/png"}, "no RSS, Atom or RDF"),
    ],
)
def test_not_a_feed(body: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_feed(body, headers, FEED_URL)


def test_body_that_looks_like_a_path_is_never_opened(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(RSS)
    # Given this as a string, feedparser would open the file; as bytes via BytesIO, never.
    with pytest.raises(ParseError):
        parse_feed(str(secret).encode(), {}, FEED_URL)


def test_body_that_looks_like_a_url_is_never_fetched() -> None:
    with pytest.raises(ParseError):
        parse_feed(b"http://127.0.0.1:9/feed.xml", {}, FEED_URL)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>Laughs &lol9;</title>
<item><title>Item &lol9;</title><description>&lol9;&lol9;</description><guid>1</guid></item>
</channel></rss>
"""


def _total_text(parsed: ParsedFeed) -> int:
    return len(parsed.title or "") + sum(len(i.title) + len(i.summary) for i in parsed.items)


def test_billion_laughs_is_not_expanded() -> None:
    parsed = parse_feed(BILLION_LAUGHS, RSS_HEADERS, FEED_URL)
    assert _total_text(parsed) < len(BILLION_LAUGHS)
    assert "lollol" not in (parsed.title or "")


def test_quadratic_blowup_is_not_expanded() -> None:
    # feedparser's own DOCTYPE handling keeps "simple" entities like this one and its
    # loose parser expands them without limit (this document would become 200 MB).
    value = "A" * 10_000
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n'
        f'<rss version="2.0"><channel><title>Q &a;</title><item><title>t</title>'
        f"<description>{'&a;' * 20_000}</description><guid>1</guid></item></channel></rss>"
    ).encode()
    parsed = parse_feed(body, RSS_HEADERS, FEED_URL)
    assert _total_text(parsed) < len(body)
    assert "AAAA" not in (parsed.title or "")


def test_quadratic_blowup_in_utf16_is_not_expanded() -> None:
    value = "A" * 10_000
    body = (
        f'<?xml version="1.0" encoding="utf-16"?>\n<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n'
        f'<rss version="2.0"><channel><title>Q &a;</title><item><title>t</title>'
        f"<description>{'&a;' * 5_000}</description><guid>1</guid></item></channel></rss>"
    ).encode("utf-16")
    parsed = parse_feed(body, {}, FEED_URL)
    assert "AAAA" not in (parsed.title or "")
    assert all("AAAA" not in i.summary for i in parsed.items)


def _xxe(target: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{target}">\n]>\n'
        '<rss version="2.0"><channel><title>X &xxe;</title><item><title>t &xxe;</title>'
        "<description>d &xxe;</description><guid>1</guid></item></channel></rss>"
    ).encode()


def test_external_entity_file_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    parsed = parse_feed(_xxe(secret.as_uri()), RSS_HEADERS, FEED_URL)
    assert "TOP-SECRET" not in repr(parsed)


def test_external_parameter_entity_and_dtd_are_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "evil.dtd"
    secret.write_text('<!ENTITY leak "DTD-WAS-LOADED">')
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{secret.as_uri()}" [\n'
        f'<!ENTITY % ext SYSTEM "{secret.as_uri()}">\n%ext;\n]>\n'
        '<rss version="2.0"><channel><title>X &leak;</title><item><title>t</title>'
        "<guid>1</guid></item></channel></rss>"
    ).encode()
    parsed = parse_feed(body, RSS_HEADERS, FEED_URL)
    assert "DTD-WAS-LOADED" not in repr(parsed)


def test_doctype_guard_is_installed() -> None:
    # feedparser is imported on first use (the fast path may never need it); the
    # guard comes with it.
    assert feeds._feedparser() is feedparser
    assert feedparser.api.replace_doctype is feeds._replace_doctype_without_entities


def test_a_parse_worker_imports_no_feedparser_for_a_plain_feed() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from bot.parsing.feeds import parse_feed; "
        "p = parse_feed(b'<rss version=\"2.0\"><channel><title>t</title><item><title>a</title>"
        "<guid>1</guid><pubDate>Mon, 06 Jan 2025 08:00:00 GMT</pubDate></item></channel></rss>',"
        " {}, 'https://n.test/f'); "
        "print(len(p.items), 'feedparser' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "False"]


def test_netscape_rss091_doctype_still_detected() -> None:
    body = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"'
        b' "http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        b'<rss version="0.91"><channel><title>Old</title><link>http://o.test/</link>'
        b"<item><title>i</title><link>http://o.test/1</link></item></channel></rss>"
    )
    parsed = parse_feed(body, RSS_HEADERS, FEED_URL)
    assert parsed.title == "Old" and parsed.items[0].link == "http://o.test/1"


def test_result_pickles() -> None:
    parsed = parse_feed(RSS, RSS_HEADERS, FEED_URL, now=NOW)
    assert pickle.loads(pickle.dumps(parsed)) == parsed


def test_runs_in_a_process_pool() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        parsed = pool.submit(parse_feed, RSS, RSS_HEADERS, FEED_URL, now=NOW).result(timeout=60)
    assert parsed == parse_feed(RSS, RSS_HEADERS, FEED_URL, now=NOW)
