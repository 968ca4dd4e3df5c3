"""Input faults the attack found: broken punycode, a stray bad byte in UTF-8, a
10 MB title, misread dates and stacked Content-Encoding. Each ends in a clear
message to whoever can act on it, and nothing else is lost.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.bootstrap import running_poller
from bot.errors import BlockedAddressError
from bot.fetching.guard import Guard
from bot.parsing.feeds import SUMMARY_LIMIT, TITLE_LIMIT, parse_feed
from bot.storage.repository import Database
from bot.telegram import commands as c
from bot.telegram.service import Caller, ChatService
from tests.reliability.conftest import Table, make_settings
from tests.support.feed_server import FeedServer, Route, rss_document

REPO = Path(__file__).resolve().parents[2]
ADMIN = 9
BAD_HOST = "http://xn--zz.test/"


def test_broken_punycode_is_refused_by_the_guard() -> None:
    with pytest.raises(BlockedAddressError, match="not a valid internationalised host name"):
        Guard().check_url(BAD_HOST)


async def test_broken_punycode_everywhere_a_url_comes_in(tmp_path: Path, table: Table) -> None:
    settings = make_settings(tmp_path, admins=[ADMIN])
    db = Database.open(settings.database_path)
    with FeedServer() as server:
        server.set_route("/moved.xml", Route(status=302, body=b"",
                                             headers={"Location": BAD_HOST}))
        db.add_feed(server.url("/moved.xml"), now=datetime.now(UTC))
        async with running_poller(settings, db) as poller:
            report = await poller.poll_due()
            reply = (await ChatService(db, poller, settings).handle(
                c.parse(c.split_command(f"/addfeed {BAD_HOST}")),
                Caller(chat_id=ADMIN, user_id=ADMIN))).text
    db.close()
    [feed] = report.feeds
    assert feed.error_kind == "blocked" and "punycode" in (feed.error or "")
    assert reply.startswith("I won't fetch that address: refused: xn--zz.test")

    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYWATCH_")}
    env.update({"STORYWATCH_DATA_DIR": str(tmp_path / "cli"), "PYTHONPATH": str(REPO),
                "STORYWATCH_CONFIG": str(tmp_path / "empty.toml")})
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    cli = subprocess.run([sys.executable, "-m", "bot", "feeds", "add", BAD_HOST], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert "not a valid internationalised host name" in cli.stdout + cli.stderr
    table.row(
        "**Broken punycode host** `http://xn--zz.test/`", "`feeds add`, `/addfeed`, a feed "
        "redirecting there", 3,
        "refused by the guard: \"xn--zz.test is not a valid internationalised host name "
        "(bad punycode)\"; CLI exit 1 without a traceback; the feed's error is `blocked`, "
        "not internal (was: `idna.IDNAError` traceback, \"something went wrong\", an "
        "internal error on every poll)",
    )


def rss(title: str, summary: str = "", date: str | None = None) -> bytes:
    item: dict[str, str] = {"guid": "1", "title": title, "description": summary}
    if date is not None:
        item["pubDate"] = date
    return rss_document("Café Wire", [item])


def test_a_stray_bad_byte_in_utf8_is_replaced_alone(table: Table) -> None:
    body = rss("Café au lait à Paris", "naïve résumé BAD").replace(b"BAD", b"\xff")
    parsed = parse_feed(body, {"content-type": "application/rss+xml; charset=utf-8"},
                        "https://a.test/")
    assert parsed.title == "Café Wire"
    assert parsed.items[0].title == "Café au lait à Paris"
    assert parsed.items[0].summary == "naïve résumé \ufffd"
    # A Latin-1 body labelled UTF-8 still reads as Latin-1 (no valid UTF-8 in it).
    latin = rss("Café").decode("utf-8").encode("latin-1")
    assert parse_feed(latin, {"content-type": "text/xml; charset=utf-8"},
                      "https://a.test/").items[0].title == "Café"
    table.row(
        "**UTF-8 feed with one invalid byte**", "\"Café au lait à Paris\" + one 0xFF", 1,
        "\"Café au lait à Paris\", the bad byte alone replaced by U+FFFD (was: the whole "
        "feed read as windows-1252, \"CafÃ©\"); a Latin-1 body labelled UTF-8 still reads "
        "as Latin-1",
    )


def test_a_10_mb_title_is_cut_while_parsing(table: Table) -> None:
    huge = "word " * 2_000_000
    parsed = parse_feed(rss(huge, huge), {}, "https://a.test/")
    item = parsed.items[0]
    assert len(item.title) <= TITLE_LIMIT and item.title.startswith("word word")
    assert len(item.summary) <= SUMMARY_LIMIT
    table.row(
        "**10 MB title and 10 MB summary**", "one entry", 1,
        f"cut to {TITLE_LIMIT} and {SUMMARY_LIMIT} characters; the raw text is cut to 20x "
        "that before markup is stripped (peak RSS: `bench/bench_input.py`)",
    )


@pytest.mark.parametrize("date", ["1400", "+1400", "0001-01-01T00:00:00Z",
                                  "Sat, 01 Jan 0001 00:00:00 GMT"])
def test_misread_dates_leave_the_item_undated(date: str) -> None:
    [item] = parse_feed(rss("Story", date=date), {}, "https://a.test/").items
    assert item.published is None


def test_real_offsets_are_still_read() -> None:
    [item] = parse_feed(rss("Story", date="Mon, 01 Jan 2024 10:00:00 +1400"), {},
                        "https://a.test/").items
    assert item.published == datetime(2023, 12, 31, 20, 0, tzinfo=UTC)


async def test_stacked_content_encoding_is_decoded_or_refused(
    tmp_path: Path, table: Table
) -> None:
    settings = make_settings(tmp_path)
    db = Database.open(settings.database_path)
    body = rss_document("Wire", [{"guid": "1", "title": "Twice compressed"}])
    with FeedServer() as server:
        server.set_route("/twice.xml", Route(body=gzip.compress(gzip.compress(body)),
                                             headers={"Content-Encoding": "gzip, gzip"}))
        server.set_route("/four.xml", Route(
            body=gzip.compress(gzip.compress(gzip.compress(gzip.compress(body)))),
            headers={"Content-Encoding": "gzip, gzip, gzip, gzip"}))
        for path in ("/twice.xml", "/four.xml"):
            db.add_feed(server.url(path), now=datetime.now(UTC))
        async with running_poller(settings, db) as poller:
            report = await poller.poll_due()
    db.close()
    by_url = {f.url.rsplit("/", 1)[1]: f for f in report.feeds}
    assert by_url["twice.xml"].error is None and by_url["twice.xml"].new_items == 1
    four = by_url["four.xml"]
    assert four.error_kind == "fetch" and "stacked 4 content encodings" in (four.error or "")
    table.row(
        "**Stacked Content-Encoding**", "`gzip, gzip`; `gzip` x 4", 2,
        "`gzip, gzip` decoded (each layer capped at the body limit) and stored; more than "
        "3 layers refused: \"the server stacked 4 content encodings …\"",
    )
