"""What the matcher reads from an item's own text, before any statistics.

An item's tokens (for term statistics and word scores) and its facts (names,
places, offices: ``facets.read_item``) depend on its title and summary alone, not
on anything the matcher has learned. So they can be read where the item is made,
in the parse worker (``bot.parse_worker``), and travel with the item
(``Item.reading``): a first pass of 1,000 feeds spent over half of the bot's own
CPU reading 50,000 items in the matcher (issue 18). The matcher calls
:func:`reading_of`, which uses the reading an item carries or reads it now, so
items made anywhere else (evaluation, tests, storage) are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.models import Item
from bot.storylines.facets import ItemFacts, read_item
from bot.storylines.text import tokens


@dataclass(frozen=True, slots=True)
class Reading:
    """An item's tokens and facts, read from its title and summary."""

    tokens: tuple[str, ...]
    facts: ItemFacts


def read(title: str, summary: str) -> Reading:
    """Read a title and summary: the one place the matcher's per-item reading is done."""
    return Reading(tuple(tokens(f"{title} {summary}")), read_item(f"{title}. {summary}"))


def reading_of(item: Item) -> Reading:
    """The reading ``item`` carries, or a fresh one when it carries none."""
    return item.reading if item.reading is not None else read(item.title, item.summary)


def with_reading(item: Item) -> Item:
    """``item`` carrying its reading (made once, where the item is made)."""
    return replace(item, reading=read(item.title, item.summary))
