"""A storyline's timeline as text lines and as counts per day (pure).

Used by ``/timeline ID`` (paged, with a chart) and ``storywatch timeline ID``
(all of it): one dated line per development, newest first, with its outlets
and how many reports were collapsed into it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from bot.delivery.digest import outlets_text
from bot.delivery.render import zone
from bot.storage.repository import TimelineRow

CHART_MIN = 5  # developments needed before a chart says anything


def when(row: TimelineRow) -> datetime:
    """A development's date: the item's own, unless missing or later than its match."""
    published = row.item.published
    if published is None or published > row.matched_at:
        return row.matched_at
    return published


def line(row: TimelineRow, tz: str | None) -> str:
    local = when(row).astimezone(zone(tz))
    title = " ".join(row.item.title.split()) or "(untitled)"
    outlets = outlets_text([row.item.source, *(d.source for d in row.duplicates)],
                           len(row.duplicates))
    text = f"{local.day} {local:%b %Y %H:%M} · {title}"
    return f"{text} — {outlets}" if outlets else text


def lines(rows: Sequence[TimelineRow], tz: str | None) -> list[str]:
    return [line(r, tz) for r in rows]


def header(storyline_id: int, title: str, count: int) -> str:
    s = "" if count == 1 else "s"
    return f"Timeline of #{storyline_id} {title}: {count} development{s}, newest first"


def per_day(rows: Sequence[TimelineRow], tz: str | None) -> list[tuple[date, int]]:
    """Developments per local day, every day from the first to the last (zeros included)."""
    if not rows:
        return []
    counts = Counter(when(r).astimezone(zone(tz)).date() for r in rows)
    first, last = min(counts), max(counts)
    return [(first + timedelta(days=n), counts.get(first + timedelta(days=n), 0))
            for n in range((last - first).days + 1)]


def text(storyline_id: int, title: str, rows: Sequence[TimelineRow], tz: str | None) -> str:
    """The whole timeline as one text (the command line's output)."""
    if not rows:
        return f"#{storyline_id} {title} has no developments yet."
    return "\n".join([header(storyline_id, title, len(rows)) + ":", *lines(rows, tz)])
