"""One alert per development: collapse near-duplicate reports of the same news.

Outlets rewrite the same wire story. When a new item matches a storyline, the
pipeline asks :func:`find_duplicate` whether an alert already sent for that
storyline (within a time window) reports the same development; if so the item
is folded into that alert instead of sending another. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rapidfuzz import fuzz

from bot.storylines.text import normalise_for_compare


@dataclass(frozen=True, slots=True)
class Report:
    """What the collapse needs to know about an item or an earlier alert."""

    title: str
    summary: str = ""
    published: datetime | None = None
    source: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """Thresholds for calling two reports the same development."""

    window: timedelta = timedelta(hours=36)
    """Only alerts published this close to the new item are considered."""
    title_ratio: float = 82.0
    """rapidfuzz ``token_sort_ratio`` of processed titles that alone means duplicate."""
    text_ratio: float = 75.0
    """``token_sort_ratio`` of processed title+summary that means duplicate..."""
    title_support: float = 60.0
    """...provided the titles are at least this close too."""


DEFAULT_DEDUPE = DedupeConfig()


def _processed(text: str) -> str:
    return normalise_for_compare(text)


def similarity(a: Report, b: Report) -> tuple[float, float]:
    """(title similarity, full-text similarity) of two reports, each 0-100.

    Titles are compared with both ``ratio`` and ``token_sort_ratio`` on
    processed text (stopwords gone, words stemmed) so that reordered headlines
    ("Putin lands in Beijing" / "In Beijing, Putin lands") still collapse.
    """
    ta, tb = _processed(a.title), _processed(b.title)
    title = max(fuzz.ratio(ta, tb), fuzz.token_sort_ratio(ta, tb)) if ta and tb else 0.0
    fa = _processed(f"{a.title} {a.summary}")
    fb = _processed(f"{b.title} {b.summary}")
    text = fuzz.token_sort_ratio(fa, fb) if fa and fb else 0.0
    return float(title), float(text)


def find_duplicate(
    new: Report, recent: Sequence[Report], config: DedupeConfig = DEFAULT_DEDUPE
) -> Report | None:
    """The earlier alert in ``recent`` that ``new`` duplicates, or None.

    ``recent`` are alerts already sent for the same storyline. The most similar
    one within the time window wins. Reports without a time are compared
    regardless of the window (we cannot tell they are far apart).
    """
    best: Report | None = None
    best_score = -1.0
    for old in recent:
        if (
            new.published is not None
            and old.published is not None
            and abs(new.published - old.published) > config.window
        ):
            continue
        title, text = similarity(new, old)
        duplicate = title >= config.title_ratio or (
            text >= config.text_ratio and title >= config.title_support
        )
        if duplicate and max(title, text) > best_score:
            best, best_score = old, max(title, text)
    return best


class Collapser:
    """Keeps recent alerts per storyline and answers "is this a duplicate?".

    A convenience over :func:`find_duplicate` for callers without storage;
    memory is bounded by ``per_storyline``.
    """

    def __init__(self, config: DedupeConfig = DEFAULT_DEDUPE, per_storyline: int = 200) -> None:
        self.config = config
        self.per_storyline = per_storyline
        self._recent: dict[int, list[Report]] = {}

    def check(self, storyline_id: int, report: Report) -> Report | None:
        """Return the earlier alert ``report`` duplicates, else remember it and return None."""
        recent = self._recent.setdefault(storyline_id, [])
        dup = find_duplicate(report, recent, self.config)
        if dup is None:
            recent.append(report)
            del recent[: -self.per_storyline]
        return dup
