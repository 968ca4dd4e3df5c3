"""Growth and floods through the real poller: a feed listing far too many items,
a storyline matching hundreds of items a poll, and a feed whose guids churn.

Feeds are served over HTTP by :class:`FeedServer`; the database is a real file.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bot.bootstrap import running_poller
from bot.models import Storyline
from bot.settings import FetchOptions, LimitOptions, Settings
from bot.storage.repository import Database
from bot.telegram import commands as c
from bot.telegram.service import Caller, ChatService
from tests.reliability.conftest import Table, make_settings
from tests.support.feed_server import FeedServer, Route, rss_document

BASE = datetime(2024, 1, 1, tzinfo=UTC)
TOPICS = ["energy deal", "grain exports", "Arctic shipping", "nuclear talks", "visa rules",
          "bank payments", "rail corridor", "space cooperation", "gas pipeline", "oil prices"]


def entries(
    start: int, count: int, *, story: bool = True, guid_tag: str = ""
) -> list[dict[str, str]]:
    out = []
    for n in range(start, start + count):
        title = (f"Wang Yi in Moscow visit: {TOPICS[n % len(TOPICS)]} discussed, report {n}"
                 if story else f"Local weather report number {n}")
        out.append({
            "guid": f"item-{n}{guid_tag}", "title": title, "description": title,
            "link": f"https://news.example.test/{n}",
            # Three days apart: no two are the same development (no collapse).
            "pubDate": format_datetime(BASE - timedelta(days=3 * n), usegmt=True),
        })
    return out


def settings_for(tmp_path: Path, **limits: int) -> Settings:
    return make_settings(tmp_path, interval=1.0, limits=LimitOptions(**limits),
                         fetch=FetchOptions(max_body_bytes=64 * 1024 * 1024))


def subscribe(db: Database, chat: int, title: str) -> int:
    story = db.add_storyline(Storyline(0, title), now=datetime.now(UTC))
    db.upsert_chat(chat, now=datetime.now(UTC))
    db.subscribe(chat, story.id, now=datetime.now(UTC))
    return story.id


async def test_a_feed_listing_20000_items_is_capped_newest_first(
    tmp_path: Path, table: Table
) -> None:
    settings = settings_for(tmp_path, items_per_feed_poll=300)
    db = Database.open(settings.database_path)
    with FeedServer() as server:
        # Newest first in the document is usual; here the newest are at the END,
        # so "the first 300" and "the newest 300" differ.
        server.set_route("/big.xml", Route(body=rss_document(
            "Firehose", list(reversed(entries(0, 20_000, story=False))))))
        feed = db.add_feed(server.url("/big.xml"), now=datetime.now(UTC))
        async with running_poller(settings, db) as poller:
            report = await poller.poll_due()
        service = ChatService(db, poller, settings)
        status = (await service.handle(c.parse(c.split_command("/status")),
                                       Caller(chat_id=1, user_id=1))).text
    stored = {r[0] for r in db._query("SELECT key FROM items")}
    db.close()
    size = (tmp_path / "storywatch.db").stat().st_size
    assert len(stored) == 300
    assert stored == {f"g:item-{n}" for n in range(300)}  # the 300 newest
    assert report.feeds[0].capped == 19_700
    assert f"#{feed.id} skipped 19,700" in status
    table.row(
        "**A feed listing 20,000 items** (cap 300 a poll)", "one poll", 20_000,
        f"the 300 newest stored, 19,700 ignored and logged; `/status` shows \"Item cap "
        f"(300 a poll): 1 feed(s) over it, e.g. #{feed.id} skipped 19,700\"; database "
        f"{size / 1e6:.1f} MB",
    )


async def test_a_storm_of_matches_is_bounded_per_chat_and_hour(
    tmp_path: Path, table: Table
) -> None:
    settings = settings_for(tmp_path, alerts_per_storyline_hour=10)
    db = Database.open(settings.database_path)
    chat = 77
    subscribe(db, chat, "Wang Yi visit to Moscow")
    with FeedServer() as server:
        server.set_route("/storm.xml", Route(body=rss_document("Wire", entries(0, 5))))
        db.add_feed(server.url("/storm.xml"), now=datetime.now(UTC))
        matches = 0
        async with running_poller(settings, db) as poller:
            await poller.poll_due()  # primes the feed
            for poll in range(3):
                server.set_route("/storm.xml", Route(body=rss_document(
                    "Wire", entries(1000 + 500 * poll, 500))))
                time.sleep(1.1)
                matches += (await poller.poll_due()).matches
    counts = db.outbox_counts()
    rows = db._query("SELECT kind, summary_count, not_before FROM outbox ORDER BY id")
    db.close()
    singles = [r for r in rows if r["summary_count"] == 0]
    summaries = [r for r in rows if r["summary_count"] > 0]
    assert matches > 100  # the storyline really matched hundreds of items
    assert len(singles) == 10
    assert len(summaries) == 1 and summaries[0]["summary_count"] == matches - 10
    assert counts["pending"] == 11
    table.row(
        "**Alert storm**: 3 polls of 500 new matching items (limit 10 per storyline, "
        "chat and hour)", "real matcher, one subscribed chat", matches,
        f"{matches} matches stored; 11 alerts queued: 10 one by one and 1 summary "
        f"\"…and {matches - 10} more matches in the last hour\" listing the latest titles, "
        "due when the hour's first alert is an hour old (was: one alert per match)",
    )


async def test_churning_guids_add_nothing_after_the_first_poll(
    tmp_path: Path, table: Table
) -> None:
    settings = settings_for(tmp_path)
    db = Database.open(settings.database_path)
    subscribe(db, 5, "Wang Yi visit to Moscow")
    with FeedServer() as server:
        server.set_route("/churn.xml", Route(body=rss_document("Wire", entries(0, 3))))
        feed = db.add_feed(server.url("/churn.xml"), now=datetime.now(UTC))
        async with running_poller(settings, db) as poller:
            await poller.poll_due()  # primes
            server.set_route("/churn.xml", Route(body=rss_document("Wire", entries(0, 4))))
            time.sleep(1.1)
            await poller.poll_due()  # one genuinely new item
            before = (db.item_count(feed.id), db.outbox_counts()["pending"])
            for poll in range(5):  # same items, new guids every time
                server.set_route("/churn.xml", Route(body=rss_document(
                    "Wire", entries(0, 4, guid_tag=f"-{poll}"))))
                time.sleep(1.1)
                await poller.poll_due()
    after = (db.item_count(feed.id), db.outbox_counts()["pending"])
    edits = db._query("SELECT COUNT(*) FROM outbox WHERE kind = 'edit'")[0][0]
    db.close()
    assert before == (4, 1)
    assert after == before and edits == 0
    table.row(
        "**Churning guids**: the same 4 items under new guids at every poll",
        "5 polls after the items were known", 20,
        "recognised by content (title, summary and link): 0 new items, 0 alerts, 0 edit rows",
    )
