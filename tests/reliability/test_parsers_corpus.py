"""Parsers: XML attacks through the full fetch-and-poll path, and the whole
feedparser test corpus through fetch, parse, normalise and render.

The unit tests in tests/unit/test_parse_feeds.py cover billion laughs,
quadratic blow-up (UTF-8 and UTF-16) and external entities at the parser. Here
the same documents are served over HTTP and polled by the real Poller, with
their external entities pointing at a file and at a counting listener.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.delivery.render import MAX_MESSAGE_CHARS, AlertView, render_html, render_plain, tg_len
from bot.errors import ParseError
from bot.fetching.client import FeedFetcher
from bot.models import FeedState, Item
from bot.parsing.feeds import ParsedFeed, parse_feed
from bot.parsing.normalize import canonical_url
from bot.pipeline import Poller
from bot.settings import FetchOptions
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher
from tests.reliability.conftest import CORPUS, ConnectionCounter, Table, make_settings
from tests.support.fake_telegram import validate_telegram_html
from tests.support.feed_server import FeedServer, Route

OPTIONS = FetchOptions(deadline_seconds=10, concurrency=16, per_host=16)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def _attacks(secret: Path, port: int) -> dict[str, bytes]:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    big = "A" * 50_000
    return {
        "billion laughs": (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol0 "lol">{lol}]>'
            "<rss version=\"2.0\"><channel><title>t</title><item><title>&lol9;</title>"
            "<guid>1</guid></item></channel></rss>"
        ).encode(),
        "quadratic blow-up": (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{big}">]>'
            "<rss version=\"2.0\"><channel><title>t</title><item><title>"
            + "&a;" * 5_000 + "</title><guid>1</guid></item></channel></rss>"
        ).encode(),
        "external entity (file)": (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret}">]>'
            "<rss version=\"2.0\"><channel><title>t</title><item><title>&x;</title>"
            "<guid>1</guid></item></channel></rss>"
        ).encode(),
        "external entity (network)": (
            f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM '
            f'"http://127.0.0.1:{port}/x">]>'
            "<rss version=\"2.0\"><channel><title>t</title><item><title>&x;</title>"
            "<guid>1</guid></item></channel></rss>"
        ).encode(),
        "external DTD and parameter entity": (
            f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "http://127.0.0.1:{port}/d.dtd" '
            f'[<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p">%p;]>'
            "<rss version=\"2.0\"><channel><title>t</title><item><title>dtd</title>"
            "<guid>1</guid></item></channel></rss>"
        ).encode(),
    }


async def test_xml_attacks_through_the_poller(
    tmp_path: Path, server: FeedServer, listener: ConnectionCounter, table: Table
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    attacks = _attacks(secret, listener.port)
    settings = make_settings(tmp_path, fetch=OPTIONS)
    db = Database.open(settings.database_path)
    now = datetime.now(UTC)
    try:
        names = {}
        for i, (name, body) in enumerate(attacks.items()):
            server.set_route(f"/a/{i}", Route(body=body))
            names[db.add_feed(server.url(f"/a/{i}"), now=now).id] = name
        async with FeedFetcher(OPTIONS, allow_private_networks=True) as fetcher:
            with ProcessPoolExecutor(1) as pool:
                report = await Poller(
                    db, fetcher, Matcher(), settings, parse_executor=pool
                ).poll_due(now)
        assert report.errors == 0, [r.error for r in report.feeds]
        for fid in names:
            [item] = db.recent_items(100) and [
                i for i in db.recent_items(100) if i.feed_id == fid
            ]
            assert len(item.title) <= 300, names[fid]  # nothing expanded
            assert "TOP-SECRET" not in item.title and "lollol" not in item.title
    finally:
        db.close()
    await asyncio.sleep(0.2)
    assert listener.accepted == 0
    table.row(
        "XML attacks over HTTP: billion laughs, quadratic blow-up, external entity (file, "
        "network), external DTD + parameter entity",
        "served by FeedServer, polled by the Poller (parse in a process pool)", len(attacks),
        "all stored as ordinary items; 0 expansions (titles ≤ 300 chars), the file never "
        "read, 0 connections to the entity URLs; unit level: tests/unit/test_parse_feeds.py "
        "(test_billion_laughs_is_not_expanded, test_quadratic_blowup_*, test_external_*)",
    )


# --- the feedparser corpus ----------------------------------------------------------------


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser corpus not found at {CORPUS} (../shared beside the checkout)")
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/xml"


STORYLINE = "Storyline <b>&amp; “quotes” & 🚀 emoji"


def _render_all(parsed: ParsedFeed) -> tuple[int, list[str]]:
    """Render every item as an alert (and as an edit with "+N more"); problems found."""
    problems: list[str] = []
    count = 0
    items = list(parsed.items)
    for i, item in enumerate(items):
        more = tuple(items[i + 1 : i + 4])
        for view in (
            AlertView(STORYLINE, item, "matched: " + item.title[:50]),
            AlertView(item.title, item, item.summary, more),
        ):
            count += 1
            text = render_html(view)
            why = validate_telegram_html(text)
            if why is not None:
                problems.append(f"{item.key}: {why}")
            if tg_len(text) > MAX_MESSAGE_CHARS:
                problems.append(f"{item.key}: {tg_len(text)} UTF-16 units")
            plain = render_plain(view)
            if tg_len(plain) > MAX_MESSAGE_CHARS or not plain.strip():
                problems.append(f"{item.key}: plain text of {tg_len(plain)} units")
            # The title's first word survives (escaped) unless the message had to be cut.
            first_word = html.escape(item.title.split()[0], quote=False) if item.title else ""
            if first_word not in text and tg_len(text) < MAX_MESSAGE_CHARS - 50:
                problems.append(f"{item.key}: title missing")
        if item.link is not None and canonical_url(item.link) != item.link:
            problems.append(f"{item.key}: link not canonical")
    return count, problems


def _check(body: bytes, headers: dict[str, str], url: str) -> tuple[str, int, int, list[str]]:
    """Parse, normalise and render one document (in a worker process)."""
    try:
        parsed = parse_feed(body, headers, url)
    except ParseError:
        return "not a feed", 0, 0, []
    rendered, problems = _render_all(parsed)
    return "feed", len(parsed.items), rendered, problems


async def test_feedparser_corpus_fetch_parse_render(server: FeedServer, table: Table) -> None:
    files = _corpus_files()
    for i, path in enumerate(files):
        server.set_route(f"/c/{i}", Route(body=path.read_bytes(), content_type=_content_type(path)))
    crashes: list[str] = []
    problems: list[str] = []
    fetch_errors: list[str] = []
    outcomes = {"feed": 0, "not a feed": 0}
    items = rendered = 0
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    async with FeedFetcher(OPTIONS, allow_private_networks=True) as fetcher:
        with ProcessPoolExecutor(2) as pool:
            gate = asyncio.Semaphore(16)

            async def one(i: int, path: Path) -> None:
                nonlocal items, rendered
                name = str(path.relative_to(CORPUS))
                async with gate:
                    try:
                        result = await fetcher.fetch(server.url(f"/c/{i}"), FeedState())
                    except Exception as exc:
                        fetch_errors.append(f"{name}: {exc}")
                        return
                    try:
                        kind, n, r, bad = await loop.run_in_executor(
                            pool, _check, result.body, result.headers, result.final_url
                        )
                    except Exception as exc:
                        crashes.append(f"{name}: {type(exc).__name__}: {exc}")
                        return
                outcomes[kind] += 1
                items += n
                rendered += r
                problems.extend(f"{name}: {p}" for p in bad)

            await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))
    elapsed = time.monotonic() - started
    assert fetch_errors == [] and crashes == [] and problems == [], (
        fetch_errors[:5], crashes[:5], problems[:10]
    )
    assert len(files) >= 2000
    table.row(
        "feedparser corpus (wellformed, illformed, encoding, json…)",
        "each file served by FeedServer, fetched, parsed, normalised; every item rendered "
        "as an alert and as an edit with “+N more”",
        len(files),
        f"{outcomes['feed']} feeds, {outcomes['not a feed']} answered “not a feed”; "
        f"{items} items, {rendered} alerts rendered: 0 fetch errors, 0 crashes, "
        f"0 invalid Telegram HTML, 0 over 4,096 UTF-16 units ({elapsed:.0f} s)",
    )


def test_render_survives_hostile_items() -> None:
    """Long, entity-heavy, astral-plane and control-character text at the limits."""
    nasty = [
        "&" * 5000, "<" * 5000, "🚀" * 5000, "a\u0000b\u0007c" * 500, "&amp;" * 2000,
        "x" * 10_000, "\u202etxt.exe" * 500, "<b>" * 2000, " ".join(["word"] * 3000),
    ]
    links = [None, f"https://e.test/{'a' * 5000}", f"https://e.test/{'🚀' * 5000}"]
    for text in nasty:
        for link in links:
            # (An emoji link of 5,000 characters once sent render_plain, the sender's
            # fallback when Telegram refuses HTML, into an endless loop.)
            item = Item("k", text[:300], text[:400], link, None, text[:200])
            for view in (
                AlertView(text[:200], item, text),
                AlertView(text, item, text, (item,) * 50),
            ):
                out = render_html(view)
                assert validate_telegram_html(out) is None, text[:20]
                assert tg_len(out) <= MAX_MESSAGE_CHARS
                assert 0 < tg_len(render_plain(view)) <= MAX_MESSAGE_CHARS
