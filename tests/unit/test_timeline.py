"""The timeline's pure parts: lines, counts per day (zeros included), and the chart."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta

from bot.delivery import timeline
from bot.delivery.chart import chart_png
from bot.models import Item
from bot.storage.repository import TimelineRow

T0 = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)


def row(hours: float, source: str = "Reuters", dups: tuple[str, ...] = (),
        published: bool = True) -> TimelineRow:
    when = T0 + timedelta(hours=hours)
    item = Item("k", f"Headline at {hours}", "", None, when if published else None, source)
    dup_items = tuple(Item("d", "x", "", None, when, s) for s in dups)
    return TimelineRow(item, when + timedelta(minutes=5), dup_items)


def test_lines_are_dated_in_the_chats_zone_with_outlets_and_duplicates() -> None:
    assert timeline.line(row(0, dups=("AP", "Reuters")), "Europe/Paris") == (
        "28 Mar 2026 23:30 · Headline at 0 — Reuters, AP (3 reports)")
    # After the spring-forward night, Paris is UTC+2; a missing date uses the match time.
    assert timeline.line(row(10, published=False), "Europe/Paris") == (
        "29 Mar 2026 10:35 · Headline at 10 — Reuters")


def test_per_day_counts_every_day_from_first_to_last() -> None:
    rows = [row(0), row(0.5), row(50), row(51), row(52)]
    assert timeline.per_day(rows, None) == [  # 22:30 and 23:00, then 00:30-02:30 (31st)
        (date(2026, 3, 28), 2), (date(2026, 3, 29), 0), (date(2026, 3, 30), 0),
        (date(2026, 3, 31), 3)]
    assert timeline.per_day(rows, "Asia/Tokyo")[0] == (date(2026, 3, 29), 2)
    assert timeline.per_day([], None) == []


def test_the_chart_is_a_png_and_never_asks_the_font_for_missing_glyphs() -> None:
    counts = [(date(2026, 1, 1) + timedelta(days=n), n % 3) for n in range(30)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph is a warning: fail on it
        for title in ("#3 王毅访问俄罗斯", "#4 Путин в Пекине", "#5 $100bn deal $x$"):
            png = chart_png(counts, title, short=title.split()[0])
            assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
