"""Alert decisions, apart from storage: which chats get a match, send or edit, storms, priming.

Pure functions over facts the storage read (``ChatFacts``); the storage only
writes what the plan says (``bot.storage.fanout``). The rules, per chat:

- nothing is alerted from a feed's first good poll (it primes the feed);
- a chat that muted the storyline gets nothing, nor one whose own 👎 on a shared
  storyline ruled the item out;
- a match that repeats an alert the chat has becomes an "edit" row ("+N more"
  on that message); at most ``MAX_EDITS_PER_ALERT`` per alert, and while one
  edit is pending the next ones are folded into it (written as 'dropped');
- past the hourly limit of messages about the storyline, the match is counted
  into the chat's one pending summary of the storyline, or starts one that is
  due when the hour's first message is an hour old;
- a chat in digest mode or in its quiet hours, or a digest-only storyline, gets
  a held row instead: the next digest of the chat gathers it. A repeat of a
  development still waiting for its digest is held too (it adds an outlet); a
  repeat of one a digest already told is not told again. The storm bound does
  not apply to held rows: a digest is already one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.delivery.schedule import Delivery, holds

# Alerts per chat and storyline are limited over this window (a storm).
STORM_WINDOW = timedelta(hours=1)

# Reports folded into one alert as "+N more" edits, at most.
MAX_EDITS_PER_ALERT = 20

FOLDED = "shown by the pending edit"


def alerts_allowed(feed_primed: bool) -> bool:
    """A feed's first good poll stores its items and alerts nothing (priming)."""
    return feed_primed


@dataclass(frozen=True, slots=True)
class ChatFacts:
    """What the storage knows about one subscribed, active chat for one match.

    ``parent``: the chat's alert of the item this match repeats (None: not a
    repeat, or the chat never got it); ``parent_edits``/``parent_waiting``: edits
    of that alert written / still pending; ``recent``: messages about the
    storyline in the storm window (None when no hourly limit applies);
    ``summary_id``: the chat's pending storm summary of the storyline;
    ``oldest_recent``: when the window's first message was queued.
    """

    chat_id: int
    parent: int | None = None
    parent_edits: int = 0
    parent_waiting: int = 0
    recent: int | None = None
    summary_id: int | None = None
    oldest_recent: datetime | None = None
    delivery: Delivery = field(default_factory=Delivery)
    digest_only: bool = False
    parent_held: bool = False  # the repeated alert waits for (or went into) a digest
    parent_in_digest: bool = False  # ... and a digest told it already
    muted: bool = False  # the chat muted the storyline for now
    excluded: bool = False  # the chat's own 👎 on a shared storyline ruled the item out


@dataclass(frozen=True, slots=True)
class Queue:
    """Write an outbox row: a 'send', or an 'edit' of ``parent``; 'dropped' when folded."""

    chat_id: int
    parent: int | None
    status: str  # 'pending' or 'dropped'

    @property
    def kind(self) -> str:
        return "send" if self.parent is None else "edit"

    @property
    def last_error(self) -> str | None:
        return None if self.status == "pending" else FOLDED


@dataclass(frozen=True, slots=True)
class CountIntoSummary:
    """Add the match to the chat's pending summary ``summary_id``."""

    chat_id: int
    summary_id: int


@dataclass(frozen=True, slots=True)
class StartSummary:
    """Start the chat's storm summary of the storyline, due at ``due``."""

    chat_id: int
    due: datetime


@dataclass(frozen=True, slots=True)
class HoldForDigest:
    """Write a held row (a 'send', or an 'edit' of ``parent``) for the chat's next digest."""

    chat_id: int
    parent: int | None

    @property
    def kind(self) -> str:
        return "send" if self.parent is None else "edit"


Action = Queue | CountIntoSummary | StartSummary | HoldForDigest


def plan_chat(facts: ChatFacts, now: datetime, hourly_limit: int | None) -> Action | None:
    """What to write for one chat; None: nothing (the alert already says "+20 more",
    or a digest told the development already)."""
    if facts.muted or facts.excluded:
        return None
    wants_digest = holds(facts.delivery, now, digest_only=facts.digest_only)
    if facts.parent is None:
        if wants_digest:
            return HoldForDigest(facts.chat_id, None)
    elif facts.parent_held:
        if facts.parent_in_digest:
            return None
        return HoldForDigest(facts.chat_id, facts.parent)
    status = "pending"
    if facts.parent is not None:
        if facts.parent_edits >= MAX_EDITS_PER_ALERT:
            return None  # a storm must not grow one message without bound
        if facts.parent_waiting:
            status = "dropped"
    storming = (
        status == "pending" and hourly_limit is not None
        and facts.recent is not None and facts.recent >= hourly_limit
    )
    if not storming:
        return Queue(facts.chat_id, facts.parent, status)
    if facts.summary_id is not None:
        return CountIntoSummary(facts.chat_id, facts.summary_id)
    # One summary with the storm's final count, once alerts may flow again.
    return StartSummary(facts.chat_id, (facts.oldest_recent or now) + STORM_WINDOW)


def plan_fanout(
    chats: list[ChatFacts], now: datetime, hourly_limit: int | None
) -> list[Action]:
    """The writes for one new match, chat by chat."""
    return [a for f in chats if (a := plan_chat(f, now, hourly_limit)) is not None]
