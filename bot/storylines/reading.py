"""What the matcher reads from an item's own text, before any statistics.

An item's tokens (for term statistics and word scores) and its facts (names,
places, offices: ``facets.read_item``) depend on its title and summary alone, not
on anything the matcher has learned, so each can be read wherever it costs least.
The facts, nearly all of the work, are read where the item is made, in the parse
worker (``bot.parse_worker``), and travel with the item (``Item.facts``): a first
pass of 1,000 feeds spent over half of the bot's own CPU reading 50,000 items in
the matcher (issue 18). The text is split into words once: the tokens are those of
the facts' words (``text.tokens_of``), taken in the bot, where splitting the text a
second time was about a fifth of its process's CPU on a first pass (issue 18 again).
The matcher calls :func:`reading_of`, which completes what an item carries, so
items made anywhere else (evaluation, tests, storage) are read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.models import Item
from bot.storylines import languages
from bot.storylines.facets import ItemFacts, read_item
from bot.storylines.text import tokens, tokens_of


@dataclass(frozen=True, slots=True)
class Reading:
    """An item's tokens and facts, read from its title and summary."""

    tokens: tuple[str, ...]
    facts: ItemFacts


def read(title: str, summary: str) -> Reading:
    """Read a title and summary: the one place the matcher's per-item reading is done."""
    facts = read_facts(title, summary)
    return Reading(_tokens(title, summary, facts), facts)


def read_facts(title: str, summary: str) -> ItemFacts:
    """The facts part of :func:`read`."""
    return read_item(f"{title}. {summary}")


def _tokens(title: str, summary: str, facts: ItemFacts) -> tuple[str, ...]:
    """The tokens of ``title`` and ``summary``: those of the facts' words, which are
    the text's words split and folded as ``tokens`` does (one tokenisation, not two);
    Chinese and Cyrillic are segmented and stemmed apart (``languages``)."""
    text = f"{title} {summary}"
    if languages.needs(text):
        return tuple(tokens(text))
    return tuple(tokens_of(facts.words))


def reading_of(item: Item) -> Reading:
    """The reading ``item`` carries; else one made now, with the facts it carries."""
    if item.reading is not None:
        return item.reading
    if item.facts is not None:
        return Reading(_tokens(item.title, item.summary, item.facts), item.facts)
    return read(item.title, item.summary)


def with_reading(item: Item) -> Item:
    """``item`` carrying its whole reading, so that it is read once however often used."""
    return replace(item, reading=reading_of(item))


def with_facts(item: Item) -> Item:
    """``item`` carrying its facts (read in the parse worker)."""
    return replace(item, facts=read_facts(item.title, item.summary))
