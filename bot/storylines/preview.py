"""A storyline's preview before it is tracked (pure): what it would have matched.

``/track TITLE`` and ``/test TITLE`` show what the storyline looks for and the stored
items of the last days it would have matched, judged by a fresh matcher that reads
those items first (their word statistics), so the preview decides as the bot would.
A storyline matching more than :data:`BROAD_PER_DAY` items a day is flagged as broad;
shared storylines whose words overlap much with the title are offered instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.models import Item, Storyline
from bot.storylines.facets import cased_title, describe
from bot.storylines.feedback import core_words
from bot.storylines.matcher import Matcher

PREVIEW_DAYS = 7
SHOWN = 5
BROAD_PER_DAY = 20.0
CLOSE = 0.5  # share of words two titles have in common (Jaccard) to call them close


@dataclass(frozen=True, slots=True)
class Preview:
    hits: tuple[Item, ...]  # newest first
    per_day: float
    close: tuple[Storyline, ...]
    looks_for: str = ""  # what it looks for, read with the names the items know
    title: str = ""  # the title to track: capitals added where it was typed without

    @property
    def broad(self) -> bool:
        return self.per_day > BROAD_PER_DAY


def close_storylines(storyline: Storyline, shared: Sequence[Storyline]) -> list[Storyline]:
    """Shared storylines whose title words overlap ``storyline``'s by ``CLOSE`` or more."""
    mine = core_words(storyline)
    out = []
    for s in shared:
        theirs = core_words(s)
        union = mine | theirs
        if s.id != storyline.id and union and len(mine & theirs) / len(union) >= CLOSE:
            out.append(s)
    return out


def preview(
    storyline: Storyline, items: Sequence[Item], shared: Sequence[Storyline] = (),
    days: float = PREVIEW_DAYS,
) -> Preview:
    """What ``storyline`` would have matched among ``items`` (the last ``days``)."""
    matcher = Matcher()
    matcher.observe(items)
    hits = [a.item_key for a in matcher.score(items, [storyline]) if a.matched]
    by_key = {i.key: i for i in items}
    found = [by_key[k] for k in dict.fromkeys(hits)]
    query = matcher.query_of(storyline)
    return Preview(tuple(reversed(found)), len(found) / max(days, 1.0),
                   tuple(close_storylines(storyline, shared)),
                   describe(query), cased_title(storyline.title, query))
