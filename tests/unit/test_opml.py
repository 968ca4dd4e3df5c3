"""The OPML reader and writer: round trips, nesting, titles, XML attacks and limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import OpmlError
from bot.feed_import import Added, Failed, ImportReport, plan
from bot.parsing.opml import (
    MAX_OPML_BYTES,
    MAX_OUTLINES,
    OpmlFeed,
    clean_title,
    read_opml,
    write_opml,
)

WHEN = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="World">
      <outline text="Wire" title="The Wire" type="rss" xmlUrl="https://wire.example/rss"/>
      <outline text="Europe">
        <outline text="Euro desk" type="rss" xmlUrl="https://eu.example/atom.xml"/>
      </outline>
    </outline>
    <outline text="Top level" type="rss" xmlurl="https://top.example/feed"/>
    <outline text="A web page, not a feed" type="link" url="https://page.example/"/>
  </body>
</opml>
"""


def test_nested_outlines_are_flattened_in_file_order_with_their_titles() -> None:
    assert read_opml(NESTED) == [
        OpmlFeed("https://wire.example/rss", "The Wire"),  # title wins over text
        OpmlFeed("https://eu.example/atom.xml", "Euro desk"),  # text when no title
        OpmlFeed("https://top.example/feed", "Top level"),  # xmlurl spelled in lower case
    ]


def test_the_writer_makes_opml_2_that_reads_back_the_same() -> None:
    feeds = [
        OpmlFeed("https://a.example/rss?x=1&y=2", "A & B <news>"),
        OpmlFeed("https://b.example/feed", None),
        OpmlFeed("https://c.example/", "Вести · 新闻"),
    ]
    document = write_opml(feeds, title="Storywatch feeds", created=WHEN)
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<opml version=\"2.0\">")
    assert b"<dateCreated>Wed, 02 Dec 2026 12:00:00 GMT</dateCreated>" in document
    assert b'type="rss"' in document
    assert read_opml(document) == feeds


def test_an_untitled_feed_is_written_with_its_address_as_text() -> None:
    document = write_opml([OpmlFeed("https://b.example/feed")], title="t", created=WHEN)
    assert b'text="https://b.example/feed"' in document  # OPML requires text
    assert b"title=" not in document.split(b"<body>")[1]
    assert read_opml(document) == [OpmlFeed("https://b.example/feed", None)]


def test_titles_xml_cannot_carry_are_cleaned_so_the_export_stays_readable() -> None:
    document = write_opml(
        [OpmlFeed("https://a.example/rss", "Bad\x0b title\x00 with\nnew line")],
        title="t", created=WHEN,
    )
    assert read_opml(document) == [OpmlFeed("https://a.example/rss", "Bad title with new line")]


_printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff"),
    max_size=60,
)


@given(st.lists(st.tuples(st.from_regex(r"https://[a-z]{1,12}\.example/[a-z0-9/?=&]{0,20}",
                                        fullmatch=True), _printable), min_size=1, max_size=30))
def test_any_feed_list_round_trips(rows: list[tuple[str, str]]) -> None:
    feeds = [OpmlFeed(url, clean_title(title)) for url, title in rows]
    expected = [OpmlFeed(f.url, None if f.title == f.url else f.title) for f in feeds]
    assert read_opml(write_opml(feeds, title="x", created=WHEN)) == expected


def test_other_encodings_are_read() -> None:
    latin = ('<?xml version="1.0" encoding="ISO-8859-1"?><opml version="1.0"><body>'
             '<outline text="Le Monde - Économie" xmlUrl="https://md.example/rss"/>'
             "</body></opml>").encode("iso-8859-1")
    assert read_opml(latin) == [OpmlFeed("https://md.example/rss", "Le Monde - Économie")]


# -- attacks and bad input: each refused with a clear message ---------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<opml version="2.0"><body><outline text="&lol9;" xmlUrl="https://x.example/rss"/></body></opml>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&xxe;" xmlUrl="https://x.example/rss"/></body></opml>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://127.0.0.1:9/evil.dtd">
<opml version="2.0"><body><outline text="a" xmlUrl="https://x.example/rss"/></body></opml>
"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<opml version="2.0"><body><outline text="a" xmlUrl="https://x.example/rss"/></body></opml>
"""
PLAIN_DOCTYPE = b"""<?xml version="1.0"?><!DOCTYPE opml>
<opml version="2.0"><body><outline text="a" xmlUrl="https://x.example/rss"/></body></opml>
"""


@pytest.mark.parametrize("document", [
    BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, PLAIN_DOCTYPE,
    b"\xef\xbb\xbf" + PLAIN_DOCTYPE,  # behind a byte-order mark
    BILLION_LAUGHS.replace(b'"1.0"?>', b'"1.0" encoding="utf-16"?>', 1).decode().encode("utf-16"),
], ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity",
        "doctype", "doctype-after-bom", "billion-laughs-in-utf-16"])
def test_any_doctype_is_refused_before_entities_are_declared(document: bytes) -> None:
    with pytest.raises(OpmlError, match="DOCTYPE declaration") as info:
        read_opml(document)
    assert "entity attacks" in str(info.value)


def test_an_undeclared_entity_is_not_xml() -> None:
    with pytest.raises(OpmlError, match="not well-formed XML"):
        read_opml(b'<opml><body><outline text="&xxe;" xmlUrl="https://x.example/"/></body></opml>')


@pytest.mark.parametrize(("document", "message"), [
    (b"%PDF-1.7 binary stuff",
     r"not an OPML file: it is not well-formed XML \(line 1, column \d+\)"),
    (b"", "the file is empty"),
    (b"   \n", "the file is empty"),
    (b"<opml><body><outline text='a'>", "not well-formed XML"),
    (b'<rss version="2.0"><channel/></rss>',
     r"root element is <rss>, not <opml> \(to add one feed, give its address instead\)"),
    (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', "root element is <feed>"),
    (b"<html><body>hello</body></html>", "root element is <html>, not <opml>$"),
    (b'<opml version="2.0"><head/></opml>', "has no <body>"),
    (b'<opml version="2.0"><body><outline text="folder"/></body></opml>', "lists no feeds"),
])
def test_files_that_are_not_opml_feed_lists_are_refused(document: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        read_opml(document)


def _outlines(n: int, *, pad: int = 0) -> bytes:
    rows = "".join(
        f'<outline text="feed {i}" xmlUrl="https://f{i}.example/rss"/>' for i in range(n)
    )
    return f'<opml version="2.0"><body>{rows}</body></opml>{" " * pad}'.encode()


def test_the_outline_limit_is_inclusive() -> None:
    assert len(read_opml(_outlines(MAX_OUTLINES))) == MAX_OUTLINES
    with pytest.raises(OpmlError, match=f"has {MAX_OUTLINES + 1:,} outlines; the limit is 2,000"):
        read_opml(_outlines(MAX_OUTLINES + 1))


def test_folders_count_towards_the_outline_limit() -> None:
    nested = b"<outline text='f'>" * (MAX_OUTLINES + 1) + b"</outline>" * (MAX_OUTLINES + 1)
    document = b'<opml><body><outline text="a" xmlUrl="https://a.example/"/>' + nested
    with pytest.raises(OpmlError, match="outlines; the limit is 2,000"):
        read_opml(document + b"</body></opml>")


def test_a_file_over_1_mb_is_refused_before_it_is_parsed() -> None:
    small = _outlines(3)
    assert len(read_opml(small + b" " * (MAX_OPML_BYTES - len(small)))) == 3
    # Past the cap the bytes are not even XML: the size alone is the reason given.
    with pytest.raises(OpmlError, match=r"1,048,577 bytes; the limit is 1,048,576 \(1 MB\)"):
        read_opml(small + b"\x00" * (MAX_OPML_BYTES + 1 - len(small)))


# -- sorting a list before anything is fetched ------------------------------------------

def test_plan_normalises_addresses_and_sorts_new_watched_repeated_and_unusable() -> None:
    feeds = [
        OpmlFeed("https://New.Example/rss", "New"),
        OpmlFeed("https://new.example/rss", "Again"),  # the same address once normalised
        OpmlFeed("https://watched.example/feed", "Old"),
        OpmlFeed("ftp://files.example/rss", "FTP"),
        OpmlFeed("", "Empty"),
        OpmlFeed("javascript:alert(1)", "Script"),
    ]
    result = plan(feeds, {"https://watched.example/feed"})
    assert result.new == [("https://new.example/rss", "New")]
    assert result.already == ["https://watched.example/feed"]
    assert result.repeated == 1
    assert [(f.url, f.reason) for f in result.failed] == [
        ("ftp://files.example/rss", "not an http(s) address"),
        ("(empty address)", "not an http(s) address"),
        ("javascript:alert(1)", "not an http(s) address"),
    ]


def test_the_summary_puts_failures_first_and_caps_each_list() -> None:
    report = ImportReport(
        added=tuple(Added(i, f"https://a{i}.example/", f"A{i}") for i in range(1, 5)),
        already=("https://old.example/",),
        failed=(Failed("https://bad.example/", "the server answered HTTP 404"),),
        repeated=2,
    )
    assert report.describe(per_section=3).splitlines() == [
        "Imported the feed list: 4 added, 1 already watched, 1 failed "
        "(2 listed twice in the file, taken once).",
        "", "Failed:", "✗ https://bad.example/ — the server answered HTTP 404",
        "", "Added:", "+ #1 A1 — https://a1.example/", "+ #2 A2 — https://a2.example/",
        "+ #3 A3 — https://a3.example/", "… and 1 more",
        "", "Already watched:", "= https://old.example/",
    ]
    assert "+ #4 A4" in report.describe()  # the CLI shows every line
