"""Collapse in the pipeline: per storyline, against the stored window, off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot import pipeline
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore, RecentMatch
from bot.storylines.text import word_list

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
PREFECTURES = word_list(
    "Fukushima Miyagi Iwate Aomori Akita Yamagata Ibaraki Tochigi Gunma Saitama Chiba "
    "Niigata Toyama Ishikawa Fukui"
)


def item(key: str, title: str, *, feed_id: int = 1, minutes: int = 0) -> Item:
    return Item(key, title, "", f"https://news.test/{key}", NOW + timedelta(minutes=minutes),
                "News", feed_id)


def collapse(items: Sequence[Item], storyline_id: int = 1,
             recent: Sequence[RecentMatch] = ()) -> list[MatchToStore]:
    matches = [Match(i.key, storyline_id, 0.9, "test") for i in items]
    return pipeline.collapse(matches, {i.key: i for i in items}, recent)


def test_fifteen_earthquakes_in_fifteen_prefectures_make_fifteen_alerts() -> None:
    quakes = [item(f"q{n}", f"Magnitude 5.1 earthquake strikes {p} prefecture", minutes=n)
              for n, p in enumerate(PREFECTURES)]
    out = collapse(quakes)
    assert len(out) == 15
    assert [m.duplicate_of_key for m in out] == [None] * 15


def test_outlets_reporting_one_development_make_one_alert() -> None:
    reports = [
        item("a", "Putin lands in Beijing for Belt and Road forum", feed_id=1),
        item("b", "Russia's Putin arrives in Beijing for Belt and Road summit", feed_id=2),
        item("c", "Putin lands in Beijing for Belt & Road forum", feed_id=3),
    ]
    out = collapse(reports)
    assert [m.duplicate_of_key for m in out] == [None, (1, "a"), (1, "a")]


def test_an_alerted_item_absorbs_a_rewrite_and_storylines_are_apart() -> None:
    sent = item("old", "Wang Yi meets Lavrov in Moscow", feed_id=4, minutes=-90)
    rewrite = item("new", "Chinese foreign minister Wang Yi holds talks with Lavrov in Moscow")
    recent = [RecentMatch(1, sent, 10)]
    assert collapse([rewrite], 1, recent)[0].duplicate_of_key == (4, "old")
    assert collapse([rewrite], 2, recent)[0].duplicate_of_key is None


# -- the stored window ------------------------------------------------------------------


def _alerted(db: Database, titles: Sequence[tuple[str, str, datetime]]) -> tuple[int, int]:
    """Store ``(key, title, when)`` as alerted matches of two storylines (same items)."""
    feed = db.add_feed("https://127.0.0.1/feed.xml", now=NOW - timedelta(days=3))
    stories = [db.add_storyline(Storyline(id=0, title=t), now=NOW - timedelta(days=3))
               for t in ("Quakes", "Storms")]
    db.commit_poll(feed.id, FeedState(), now=NOW - timedelta(days=3), title=None, items=[],
                   matches=[])
    for key, title, when in titles:
        db.commit_poll(
            feed.id, FeedState(), now=when, title=None, items=[item(key, title, feed_id=feed.id)],
            matches=[MatchToStore(Match(key, s.id, 0.9, "test")) for s in stories],
        )
    return stories[0].id, stories[1].id


def test_window_keeps_the_newest_alerts_of_each_storyline(db: Database) -> None:
    rows = [(f"k{n}", f"Storm number {n} reaches the coast", NOW - timedelta(hours=n))
            for n in (40, 5, 4, 3)]
    first, second = _alerted(db, rows)
    since = NOW - timedelta(hours=36)
    every = db.recent_matches([first, second], since)
    assert [(r.storyline_id, r.item.key) for r in every] == [
        (first, "k5"), (second, "k5"), (first, "k4"), (second, "k4"),
        (first, "k3"), (second, "k3"),
    ]
    capped = db.recent_matches([first, second], since, per_storyline=2)
    assert [(r.storyline_id, r.item.key) for r in capped] == [
        (first, "k4"), (second, "k4"), (first, "k3"), (second, "k3"),
    ]


async def test_pipeline_collapses_against_the_database_in_a_worker_thread(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    story, _ = _alerted(db, [("sent", "Putin lands in Beijing for Belt and Road forum",
                              NOW - timedelta(hours=2))])
    threads: list[int] = []
    real = pipeline.collapse

    def spy(*args: object, **kwargs: object) -> list[MatchToStore]:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "collapse", spy)
    fresh = [item("w", "Russia's Putin arrives in Beijing for Belt and Road summit", feed_id=2),
             item("q", "Magnitude 5.1 earthquake strikes Miyagi prefecture", feed_id=2)]
    out = await pipeline.collapse_matches(
        db, [Match(i.key, story, 0.9, "test") for i in fresh], {i.key: i for i in fresh}, NOW
    )
    feed_id = db.list_feeds()[0].id
    assert [m.duplicate_of_key for m in out] == [(feed_id, "sent"), None]
    assert threads and threads[0] != threading.get_ident()  # not the event loop's thread
