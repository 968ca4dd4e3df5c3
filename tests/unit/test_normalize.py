"""Unit tests for canonical URLs, plain text extraction and item keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.parsing.normalize import canonical_url, item_key, plain_text, truncate


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("https://example.com", "https://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"),
        (
            "https://news.test/story?utm_source=rss&utm_medium=feed&id=7&fbclid=x&gclid=y",
            "https://news.test/story?id=7",
        ),
        ("https://n.test/s?mc_cid=1&mc_eid=2&ref=home&cmpid=3&ocid=4", "https://n.test/s"),
        ("https://n.test/s?UTM_Campaign=x&p=1", "https://n.test/s?p=1"),
        ("https://n.test/s?utm%5Fsource=x&p=1", "https://n.test/s?p=1"),
        ("https://n.test/s?", "https://n.test/s"),
        ("https://n.test/s?flag&x=", "https://n.test/s?flag&x="),
        ("https://n.test/a%20b?q=a%2Bb", "https://n.test/a%20b?q=a%2Bb"),
        ("https://user:pass@n.test/x", "https://n.test/x"),
        ("https://Example.com./x", "https://example.com/x"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
        ("http://bücher.example/x", "http://xn--bcher-kva.example/x"),
        ("  https://n.test/x\n", "https://n.test/x"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   ",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "data:text/html,hi",
        "mailto:a@b.c",
        "/relative/path",
        "http://",
        "http://example.com:notaport/",
        "http://exa\x00mple.com/",
    ],
)
def test_canonical_url_rejects(url: str | None) -> None:
    assert canonical_url(url) is None


def test_canonical_url_is_idempotent() -> None:
    once = canonical_url("HTTPS://A.test:443/p?z=1&utm_x=2&a=3#f")
    assert once is not None
    assert canonical_url(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain words", "plain words"),
        ("<p>Hello&nbsp;<b>world</b></p><p>again</p>", "Hello world again"),
        ("a<br>b<br/>c", "a b c"),
        ("x<script>alert('no')</script>y", "xy"),
        ("<style>p{color:red}</style>text", "text"),
        ("Tom &amp; Jerry &lt;3 &#8212; &#x2014; &eacute;", "Tom & Jerry <3 — — é"),
        ("AT&T and a < b", "AT&T and a < b"),
        ("  lots \n\n of\t\twhitespace  ", "lots of whitespace"),
        ("bell\x07 null\x00 esc\x1b end", "bell null esc end"),
        ("bidi\u202eoverride\u200b zero\ufeffwidth", "bidioverride zerowidth"),
        ("family \U0001f468\u200d\U0001f469\u200d\U0001f467", "family 👨\u200d👩\u200d👧"),
        ("<div><ul><li>one</li><li>two</li></ul></div>", "one two"),
        ("<img src=x onerror=alert(1)>caption", "caption"),
        ("", ""),
        (None, ""),
    ],
)
def test_plain_text(text: str | None, expected: str) -> None:
    assert plain_text(text) == expected


def test_plain_text_limit_cuts_at_a_word() -> None:
    out = plain_text("alpha beta gamma delta epsilon", limit=17)
    assert out == "alpha beta gamma…"
    assert len(out) <= 17


def test_plain_text_limit_noop_when_short() -> None:
    assert plain_text("short", limit=100) == "short"


def test_truncate_long_word() -> None:
    out = truncate("x" * 50, 10)
    assert out == "x" * 9 + "…"


def test_item_key_prefers_guid() -> None:
    assert item_key("  tag:x,2024:1 ", "https://a.test/1", "T", None) == "g:tag:x,2024:1"


def test_item_key_blank_guid_falls_back_to_link() -> None:
    key = item_key("   ", "https://A.test/1?utm_source=rss#c", "T", None)
    assert key == "u:https://a.test/1"


def test_item_key_hashes_title_and_date_without_guid_or_link() -> None:
    when = datetime(2024, 1, 1, 10, tzinfo=UTC)
    key = item_key(None, None, "Big <b>News</b>", when)
    assert key.startswith("h:") and len(key) == 2 + 64
    # Normalised title and equal instants give the same key.
    same = item_key(None, None, "  big news ", when.astimezone(timezone(timedelta(hours=3))))
    assert same == key
    assert item_key(None, None, "Big News", when + timedelta(minutes=1)) != key


def test_item_key_non_http_link_is_ignored() -> None:
    assert item_key(None, "javascript:x", "T", None).startswith("h:")


def test_item_key_long_guid_is_hashed_stably() -> None:
    guid = "x" * 1000
    key = item_key(guid, None, None, None)
    assert key.startswith("g:sha256:") and key == item_key(guid, None, None, None)
    assert len(key) < 100
