"""The storage seam: one interface per aggregate, what the rest of the bot depends on.

``storage.repository.Database`` implements all of them on SQLite and on
PostgreSQL; the pipeline, the sender, the bot's commands and the CLI name the
interfaces they use, so a store of another shape (or a test double) can stand
in for one aggregate without the rest. The combined interfaces at the end are
what each component needs: the poller, the sender, the bot's commands
(``CommandStore``) and the CLI (``CliStore``). Decisions are not here: see ``bot.planner``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.models import Feed, FeedState, Item, Storyline
from bot.storage.engine import Row

if TYPE_CHECKING:
    from bot.delivery.schedule import Delivery
    from bot.storage.digests import DigestJob
    from bot.storage.repository import (
        ChatFigures,
        MatchRow,
        MatchToStore,
        OutboxEntry,
        PollCommit,
        RecentMatch,
        StorylineRow,
        TimelineRow,
    )


class Closeable(Protocol):
    """A store opened for one command, closed when it is done."""

    def close(self) -> None: ...


class MetaStore(Protocol):
    """Small named values (health figures, notes of uncertain sends)."""

    def set_meta(self, key: str, value: str) -> None: ...

    def get_meta(self, key: str) -> str | None: ...


class MatcherStateStore(Protocol):
    """What the matcher learned, kept across restarts."""

    def save_matcher_state(self, state: dict[str, Any]) -> None: ...

    def load_matcher_state(self) -> dict[str, Any] | None: ...

    def update_matcher_state(
        self, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> None: ...

    def recent_items(self, limit: int) -> list[Item]: ...


class FeedStore(Protocol):
    """The watched feeds and their HTTP state."""

    def add_feed(
        self,
        url: str,
        *,
        now: datetime,
        title: str | None = None,
        added_by: int | None = None,
        keep_title: bool = False,
    ) -> Feed: ...

    def get_feed(self, feed_id: int) -> Feed | None: ...

    def find_feed(self, url: str) -> Feed | None: ...

    def list_feeds(self) -> list[Feed]: ...

    def remove_feed(self, feed_id: int) -> bool: ...

    def make_all_due(self) -> None: ...

    def due_feeds(self, now: datetime) -> list[Feed]: ...

    def item_count(self, feed_id: int) -> int: ...

    def record_feed_state(
        self, feed_id: int, state: FeedState, *, now: datetime, title: str | None = None
    ) -> None: ...

    def record_feed_states(self, states: Sequence[tuple[int, FeedState, datetime]]) -> None: ...

    def capped_feeds(self) -> list[tuple[int, str, int]]: ...


class PollWrites(Protocol):
    """What one poll reads and writes about items, in one transaction."""

    def known_keys(self, feed_id: int, keys: Sequence[str]) -> set[str]: ...

    def known_item_keys(self, feed_id: int, items: Sequence[Item]) -> set[str]: ...

    def commit_poll(
        self,
        feed_id: int,
        state: FeedState,
        *,
        now: datetime,
        title: str | None,
        items: Sequence[Item],
        matches: Sequence[MatchToStore],
        capped: int = 0,
        hourly_limit: int | None = None,
        excluded: Mapping[tuple[str, int], Collection[int]] | None = None,
    ) -> PollCommit: ...

    def recent_matches(
        self, storyline_ids: Sequence[int], since: datetime, *, per_storyline: int | None = None
    ) -> list[RecentMatch]: ...

    def held_items(
        self, chat_id: int, storyline_id: int, since: datetime, limit: int
    ) -> list[Item]: ...

    def matches(
        self, *, since: datetime, storyline_id: int | None = None, limit: int = 200
    ) -> list[MatchRow]: ...


class StorylineStore(Protocol):
    """Storylines, chats and subscriptions."""

    def add_storyline(
        self, storyline: Storyline, *, now: datetime, created_by: int | None = None
    ) -> Storyline: ...

    def upsert_shared_storyline(self, storyline: Storyline, *, now: datetime) -> Storyline: ...

    def get_storyline(self, storyline_id: int) -> Storyline | None: ...

    def active_storylines(self) -> list[Storyline]: ...

    def storylines_for_chat(self, chat_id: int | None) -> list[StorylineRow]: ...

    def count_storylines_created_by(self, chat_id: int) -> int: ...

    def find_storyline_by_title(self, chat_id: int, title: str) -> Storyline | None: ...

    def set_shared(self, storyline_id: int) -> bool: ...

    def deactivate_storyline(self, storyline_id: int) -> bool: ...

    def upsert_chat(
        self, chat_id: int, *, now: datetime, type_: str = "private", title: str | None = None
    ) -> None: ...

    def chat_is_active(self, chat_id: int) -> bool: ...

    def deactivate_chat(self, chat_id: int, reason: str) -> None: ...

    def migrate_chat(self, old_id: int, new_id: int) -> None: ...

    def chat_tz(self, chat_id: int) -> str | None: ...

    def set_chat_tz(self, chat_id: int, tz: str | None) -> None: ...

    def chat_figures(self, chat_id: int) -> ChatFigures: ...

    def followers(self, storyline_id: int) -> list[int]: ...

    def subscribe(self, chat_id: int, storyline_id: int, *, now: datetime) -> bool: ...

    def unsubscribe(self, chat_id: int, storyline_id: int) -> bool: ...


class OutboxStore(Protocol):
    """The alerts to deliver: claims, outcomes, leases."""

    def claim_due_alerts(self, now: datetime, limit: int) -> list[OutboxEntry]: ...

    def outbox_entry(self, outbox_id: int) -> OutboxEntry | None: ...

    def message_rows(self, outbox_id: int) -> list[OutboxEntry]: ...

    def duplicates_of(self, outbox_ids: int | Sequence[int]) -> list[Item]: ...

    def mark_sent(
        self, outbox_id: int | Sequence[int], *, now: datetime, message_id: int | None
    ) -> None: ...

    def mark_retry(
        self, outbox_id: int | Sequence[int], *, not_before: datetime, error: str
    ) -> None: ...

    def mark_failed(self, outbox_id: int | Sequence[int], error: str) -> None: ...

    def recover_in_flight(self) -> int: ...

    def recover_expired_claims(
        self,
        now: datetime,
        lease: timedelta,
        *,
        keep: Collection[int] = (),
        keep_digests: Collection[int] = (),
    ) -> int: ...

    def outbox_counts(self) -> dict[str, int]: ...

    def release_claim(
        self, outbox_id: int | Sequence[int], *, not_before: datetime, error: str
    ) -> None: ...


class SteeringStore(Protocol):
    """Feedback on alerts, mutes and sensitivity (the alert buttons, /track)."""

    def record_feedback(
        self, *, storyline_id: int, chat_id: int, user_id: int | None, item_id: int | None,
        verdict: str, scope: str, title: str, summary: str, now: datetime,
    ) -> None: ...

    def alert_marks(
        self, chat_id: int, item_id: int, storyline_ids: Sequence[int], now: datetime
    ) -> dict[int, tuple[str | None, bool, bool]]: ...

    def message_rows(self, outbox_id: int) -> list[OutboxEntry]: ...

    def set_mute(self, chat_id: int, storyline_id: int, until: datetime | None) -> bool: ...

    def set_sensitivity(self, storyline_id: int, value: str) -> bool: ...

    def sensitivities(self) -> dict[int, str]: ...

    def items_since(self, since: datetime, limit: int) -> list[Item]: ...


class ChatDeliveryStore(Protocol):
    """A chat's delivery settings: instant or digests, quiet hours, held alerts."""

    def chat_delivery(self, chat_id: int) -> Delivery: ...

    def set_chat_delivery(
        self, chat_id: int, mode: str, *, times: str | None = None, quiet: str | None = None
    ) -> None: ...

    def set_digest_only(self, chat_id: int, storyline_id: int, on: bool) -> bool: ...

    def digest_only_storylines(self, chat_id: int) -> list[tuple[int, str]]: ...

    def held_count(self, chat_id: int) -> int: ...

    def build_digest_now(self, chat_id: int, now: datetime) -> int | None: ...


class TimelineStore(Protocol):
    """A storyline's developments (/timeline, ``storywatch timeline``)."""

    def timeline(self, storyline_id: int) -> list[TimelineRow]: ...


class LeaseStore(Protocol):
    """Work shared by many workers: feeds leased for one poll, named leases."""

    def lease_due_feeds(
        self, now: datetime, *, worker: str, lease: timedelta, limit: int
    ) -> list[Feed]: ...

    def release_feed(self, feed_id: int, worker: str) -> None: ...

    def take_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool: ...

    def drop_lease(self, name: str, holder: str) -> None: ...

    def lease_holder(self, name: str, now: datetime) -> str | None: ...


class PollerStore(FeedStore, PollWrites, MetaStore, MatcherStateStore, LeaseStore, Protocol):
    """What a poll pass needs (``bot.pipeline``)."""

    def active_storylines(self) -> list[Storyline]: ...

    def feedback_rows(self, storyline_id: int | None = None) -> list[Row]: ...

    def sensitivities(self) -> dict[int, str]: ...


class DigestStore(Protocol):
    """Digests: built when their time comes, claimed and sent part by part."""

    def build_due_digests(self, now: datetime) -> list[int]: ...

    def claim_due_digests(self, now: datetime, limit: int) -> list[DigestJob]: ...

    def digest_part_sent(
        self, digest_id: int, index: int, *, message_id: int | None, now: datetime
    ) -> None: ...

    def release_digest(
        self, digest_id: int, *, not_before: datetime, error: str, counted: bool = False
    ) -> None: ...

    def fail_digest(self, digest_id: int, error: str) -> None: ...


class SenderStore(OutboxStore, DigestStore, MetaStore, Protocol):
    """What delivery needs (``bot.delivery.sender``): the outbox, and the chat
    changes Telegram reports (blocked, migrated)."""

    def deactivate_chat(self, chat_id: int, reason: str) -> None: ...

    def migrate_chat(self, old_id: int, new_id: int) -> None: ...

    def alert_marks(
        self, chat_id: int, item_id: int, storyline_ids: Sequence[int], now: datetime
    ) -> dict[int, tuple[str | None, bool, bool]]: ...

    def held_items(
        self, chat_id: int, storyline_id: int, since: datetime, limit: int
    ) -> list[Item]: ...


class CommandStore(
    FeedStore, StorylineStore, SteeringStore, ChatDeliveryStore, TimelineStore, MetaStore,
    Protocol,
):
    """What the bot's commands need (``bot.telegram.service``, ``bot.telegram.steering``)."""

    def outbox_counts(self) -> dict[str, int]: ...

    def add_pending_track(
        self, *, chat_id: int, user_id: int | None, title: str, now: datetime
    ) -> int: ...

    def take_pending_track(self, token: int, chat_id: int) -> str | None: ...


class CliStore(PollerStore, StorylineStore, TimelineStore, Closeable, Protocol):
    """What the ``storywatch`` subcommands need (``bot.cli``): a poll pass, the feeds,
    storylines, matches and timelines, closed when the command ends."""
