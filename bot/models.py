"""Domain values passed between pipeline stages.

Every stage between fetch and send is pure: these frozen dataclasses go in and
come out, and nothing in here does I/O. Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.wire import by_fields

if TYPE_CHECKING:
    from bot.storylines.facets import ItemFacts
    from bot.storylines.reading import Reading


@dataclass(frozen=True, slots=True)
class FeedState:
    """What we remember about a feed between two fetches."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    next_check: datetime | None = None
    consecutive_errors: int = 0
    last_error: str | None = None
    last_ok: datetime | None = None


@dataclass(frozen=True, slots=True)
class Feed:
    """A feed the bot polls. ``primed`` is false until its first good fetch,
    whose items are stored but never alerted (no backlog flood)."""

    id: int
    url: str
    title: str | None
    state: FeedState = field(default_factory=FeedState)
    primed: bool = False


@by_fields
@dataclass(frozen=True, slots=True)
class Item:
    """One normalised feed entry. ``key`` is its stable identity."""

    key: str
    title: str
    summary: str
    link: str | None
    published: datetime | None
    source: str
    feed_id: int | None = None
    reading: Reading | None = field(default=None, compare=False, repr=False)
    """What the matcher reads from ``title`` and ``summary``
    (``bot.storylines.reading.Reading``), read once per item; never stored, and
    ignored in comparisons."""
    facts: ItemFacts | None = field(default=None, compare=False, repr=False)
    """The facts part of the reading alone, when it was read where the item was made
    (the parse worker); never stored, and ignored in comparisons."""


@dataclass(frozen=True, slots=True)
class Storyline:
    """A tracked story: what the user typed plus optional seed text.

    ``aliases`` maps a canonical name to other names for it, as seed files give
    them (``{"Wang Yi": ["Wang", "Chinese foreign minister"]}``).
    """

    id: int
    title: str
    seed_text: str = ""
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    keywords: tuple[str, ...] = ()
    shared: bool = False
    slug: str | None = None
    owner: int | None = None
    """The chat that created it; None for shared and seed storylines. Storylines
    compete for an item only with storylines of the same owner."""
    seeded_at: datetime | None = None
    """When the news report it was seeded with appeared (a ``/track`` in reply to an
    article): the story is in the news from then. None for a title, or a background
    document, whose story moves only when it first matches."""


@dataclass(frozen=True, slots=True)
class Match:
    """An item judged to belong to a storyline, with why."""

    item_key: str
    storyline_id: int
    score: float
    reason: str
