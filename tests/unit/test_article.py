"""Reading the article behind a link: extraction (pure) and the guarded fetch against a
local HTTP server (real sockets on 127.0.0.1)."""

from __future__ import annotations

import pytest

from bot.errors import BlockedAddressError, ParseError, TooLargeError
from bot.fetching.article import ArticleReader
from bot.fetching.client import FeedFetcher
from bot.parsing.article import extract_article, strip_bylines
from bot.settings import FetchOptions
from tests.support.feed_server import FeedServer, Route

PAGE = """<html><head><title>Wang Yi visits Moscow for talks with Lavrov | Example News</title>
</head><body><nav><a href="/">Home</a> <a href="/sport">Sport</a> www com</nav>
<article><h1>Wang Yi visits Moscow for talks with Lavrov</h1><p>By Jane Doe</p>
<p>MOSCOW (AP) — Chinese Foreign Minister Wang Yi arrived in Moscow on Monday for talks
with Sergei Lavrov about the war in Ukraine and trade between the two countries.</p>
<p>The visit is his first since the summit in Beijing, where Vladimir Putin met Xi Jinping.
(Reporting by Jane Doe; Editing by John Roe)</p></article>
<footer>Copyright Example News. Cookies. Subscribe.</footer></body></html>"""


def test_datelines_bylines_and_agency_credits_are_removed() -> None:
    text = ("MOSCOW (AP) — Wang Yi arrived.\nBy Jane Doe and John Roe\n"
            "BEIJING, Sept 18 (Reuters) - Talks began.\nLavrov said (Reuters) - it went well\n"
            "WASHINGTON — Officials met.\nThe talks went on. (Reporting by A; Editing by B)")
    assert strip_bylines(text) == (
        "Wang Yi arrived.\nTalks began.\nLavrov said it went well\nOfficials met.\n"
        "The talks went on."
    )
    assert strip_bylines("Reuters reported that AP staff left") == (
        "Reuters reported that AP staff left"  # names in a sentence are the news, kept
    )


def test_title_and_main_text_without_navigation_or_bylines() -> None:
    title, text = extract_article(PAGE.encode("utf-8"), {"content-type": "text/html"})
    assert title == "Wang Yi visits Moscow for talks with Lavrov"
    assert text.startswith("Wang Yi visits Moscow for talks with Lavrov\nChinese Foreign Minister")
    for noise in ("MOSCOW (AP)", "Jane Doe", "Sport", "Copyright", "www", "Reporting by"):
        assert noise not in text


def test_the_servers_charset_is_used() -> None:
    body = PAGE.replace("Lavrov</h1>", "Lavrov à Moscou</h1>").encode("cp1252")
    _, text = extract_article(body, {"content-type": "text/html; charset=windows-1252"})
    assert "Lavrov à Moscou" in text


@pytest.mark.parametrize("ctype", ["application/rss+xml", "image/png"])
def test_not_a_web_page(ctype: str) -> None:
    with pytest.raises(ParseError, match="not a web page"):
        extract_article(b"<rss/>", {"content-type": ctype})


async def test_the_guarded_fetcher_reads_pages_and_keeps_its_rules() -> None:
    with FeedServer() as server:
        server.set_route("/a.html", Route(body=PAGE.encode(), content_type="text/html"))
        server.set_route("/big.html", Route(body=PAGE.encode() * 50, content_type="text/html"))
        async with FeedFetcher(FetchOptions(max_body_bytes=5000), True) as fetcher:
            reader = ArticleReader(fetcher)
            title, _ = await reader.read(server.url("/a.html") + "#comments")
            assert title == "Wang Yi visits Moscow for talks with Lavrov"
            assert [r.path for r in server.requests_for("/a.html")] == ["/a.html"]  # no fragment
            with pytest.raises(TooLargeError):
                await reader.read(server.url("/big.html"))
        async with FeedFetcher(FetchOptions()) as guarded:
            with pytest.raises(BlockedAddressError, match="loopback"):
                await ArticleReader(guarded).read(server.url("/a.html"))
        assert len(server.requests_for("/a.html")) == 1  # the refused read never connected
