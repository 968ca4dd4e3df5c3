"""What each bot command does, apart from Telegram: typed command in, reply text out.

The handlers (``bot.telegram.handlers``) parse an update and call
:meth:`ChatService.handle`; this module holds the rules (who may do what, the
per-chat storyline limit, what a reply says) and talks to the database and
the poller. Replies are plain text: no parse mode, so nothing a user or a
feed typed can break them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, Protocol, TypeVar

from bot.delivery.render import tg_len
from bot.errors import BlockedAddressError, ConfigError, FetchError, HTTPStatusError, ParseError
from bot.health import INTERNAL_LAST_POLL_KEY, INTERNAL_TOTAL_KEY
from bot.models import Feed, Storyline
from bot.observability.logs import BARE_TOKEN
from bot.pipeline import ProbeResult
from bot.settings import Settings
from bot.storage.repository import Database, DuplicateError, StorylineRow
from bot.storylines.profile import Profile, build_profile
from bot.telegram import commands as c

P = ParamSpec("P")
T = TypeVar("T")
MAX_REPLY = 4096
MAX_SEED_CHARS = 20_000


class FeedAdder(Protocol):
    """The part of the poller the commands use (``bot.pipeline.Poller``)."""

    async def add_feed(
        self, url: str, *, added_by: int | None = None
    ) -> tuple[Feed, ProbeResult]: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, from where."""

    chat_id: int
    user_id: int | None
    chat_type: str = "private"
    chat_title: str | None = None
    reply_text: str | None = None  # text of the message the command replied to


def fit(text: str, limit: int = MAX_REPLY) -> str:
    """Cut a reply to Telegram's length, at a line boundary when possible."""
    if tg_len(text) <= limit:
        return text
    lines = text.split("\n")
    while lines and tg_len("\n".join([*lines, "…"])) > limit:
        lines.pop()
    return "\n".join([*lines, "…"]) if lines else text[: limit // 2] + "…"


def describe_profile(profile: Profile, *, limit: int = 8) -> str:
    """What the matcher will look for, in a line or three a user can check."""
    lines: list[str] = []
    names = []
    for e in profile.entities[:limit]:
        alts = [a for a in e.aliases if a != e.name][:3]
        names.append(f"{e.name} ({', '.join(alts)})" if alts else e.name)
    if names:
        lines.append("Names: " + " · ".join(names))
    entity_toks = profile.entity_tokens()
    terms = sorted(
        (t for t in profile.terms if t not in entity_toks),
        key=lambda t: (-profile.terms[t], t),
    )[:limit]
    if terms:
        lines.append("Terms: " + ", ".join(terms))
    if profile.actions:
        lines.append("Kind of development: " + ", ".join(profile.actions[:limit]))
    return "\n".join(lines) if lines else "the words of the title"


class ChatService:
    """Carries out parsed commands for one bot."""

    def __init__(
        self,
        db: Database,
        feeds: FeedAdder,
        settings: Settings,
        *,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._feeds = feeds
        self._settings = settings
        self._now = utcnow

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._settings.env.admins

    @staticmethod
    async def _run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Database calls are short but synchronous: keep them off the event loop.
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def handle(self, cmd: c.Command, who: Caller) -> str:
        """The reply to ``cmd``; never raises for a user mistake."""
        # Every command registers the chat: a chat that blocked the bot and
        # talks to it again is active again, and subscriptions need the row.
        await self._run(
            self._db.upsert_chat, who.chat_id, now=self._now(), type_=who.chat_type,
            title=who.chat_title,
        )
        match cmd:
            case c.Start():
                return self._welcome(who)
            case c.Help():
                return c.help_text(admin=self.is_admin(who.user_id))
            case c.Track(title):
                return await self._track(title, who)
            case c.Untrack(sid):
                return await self._untrack(sid, who)
            case c.ListStorylines():
                return await self._list(who)
            case c.Subscribe(sid):
                return await self._subscribe(sid, who)
            case c.Unsubscribe(sid):
                return await self._unsubscribe(sid, who)
            case c.Status():
                return await self._status(who)
            case c.ListFeeds() | c.AddFeed() | c.RemoveFeed() if not self.is_admin(who.user_id):
                return (
                    "Sorry, only the bot's admins can manage feeds. "
                    "/status shows how the feeds are doing."
                )
            case c.ListFeeds():
                return await self._feeds_list()
            case c.AddFeed(url):
                return await self._add_feed(url, who)
            case c.RemoveFeed(fid):
                return await self._remove_feed(fid)
            case c.Unknown(name):
                return f"I don't know /{name[:40]}. /help lists what I can do."
        return "I didn't understand that. /help lists what I can do."

    # -- commands -----------------------------------------------------------

    def _welcome(self, who: Caller) -> str:
        where = "this group" if who.chat_type != "private" else "you"
        return (
            f"Welcome to Storywatch! I'll tell {where} when a news storyline you follow moves.\n\n"
            "Next: follow a story with\n/track Putin trip to China\n"
            "or reply /track to an article to start from its text.\n"
            "/storylines shows the shared storylines you can /subscribe to; "
            "/help lists every command."
        )

    async def _track(self, title: str | None, who: Caller) -> str:
        limit = self._settings.file.limits.storylines_per_chat
        count = await self._run(self._db.count_storylines_created_by, who.chat_id)
        if count >= limit:
            return (
                f"This chat already has {count} storylines (the limit is {limit}). "
                "Remove one with /untrack ID first; /storylines lists them."
            )
        seed = (who.reply_text or "").strip()[:MAX_SEED_CHARS]
        if BARE_TOKEN.search(title or "") or BARE_TOKEN.search(seed):
            # Stored, it would be split into "names" and terms that no log
            # redaction recognises as a secret any more (and echoed in replies).
            return (
                "That looks like a Telegram bot token, so I won't store it or track it. "
                "If it is a real token, revoke it with @BotFather (/revoke)."
            )
        aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
        keywords: tuple[str, ...] = ()
        if title is None:
            if not seed:
                return "Reply /track to a message with text, or give a title: /track Putin trip"
            proposal = await self._propose(seed)
            if proposal is None:
                return (
                    "I couldn't find a storyline in that text. Give it a title: "
                    "/track Putin trip to China (as a reply, the text still seeds it)."
                )
            title, aliases, keywords = proposal
        storyline = await self._run(
            self._db.add_storyline,
            Storyline(id=0, title=title, seed_text=seed, aliases=aliases, keywords=keywords),
            now=self._now(),
            created_by=who.chat_id,
        )
        await self._run(self._db.subscribe, who.chat_id, storyline.id, now=self._now())
        looks_for = describe_profile(build_profile(storyline))
        seeded = " (seeded from the message you replied to)" if seed else ""
        return fit(
            f"Tracking #{storyline.id}: {storyline.title}{seeded}\n"
            f"I'll look for:\n{looks_for}\n\n"
            f"Alerts come to this chat. /untrack {storyline.id} stops it."
        )

    @staticmethod
    async def _propose(
        text: str,
    ) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]] | None:
        from bot.storylines.seeding import propose_storylines

        proposals = await asyncio.to_thread(propose_storylines, text, limit=1)
        if not proposals:
            return None
        p = proposals[0]
        title = " ".join(p.title.split())[: c.MAX_TITLE_CHARS]
        if not title:
            return None
        aliases = tuple((e.name, tuple(e.aliases)) for e in p.entities if e.aliases)
        return title, aliases, tuple(p.keywords)

    async def _row(self, storyline_id: int, chat_id: int | None) -> StorylineRow | None:
        rows = await self._run(self._db.storylines_for_chat, chat_id)
        return next((r for r in rows if r.storyline.id == storyline_id), None)

    async def _untrack(self, sid: int, who: Caller) -> str:
        row = await self._row(sid, None)
        if row is None:
            return f"There is no storyline #{sid}. /storylines lists them."
        s = row.storyline
        owner = row.created_by == who.chat_id and not s.shared
        if owner or self.is_admin(who.user_id):
            await self._run(self._db.deactivate_storyline, sid)
            others = row.subscribers - 1 if row.subscribed else row.subscribers
            extra = f" It had {others} other follower(s)." if others > 0 else ""
            return f"Removed storyline #{sid}: {s.title}.{extra}"
        if await self._run(self._db.unsubscribe, who.chat_id, sid):
            return (
                f"This chat no longer follows #{sid}: {s.title}. "
                "It stays for others (only the chat that created it can remove it)."
            )
        return f"This chat doesn't follow #{sid}. /storylines shows what it follows."

    async def _list(self, who: Caller) -> str:
        rows = await self._run(self._db.storylines_for_chat, who.chat_id)
        if not rows:
            return (
                "This chat follows no storylines and there are no shared ones yet. "
                "Start one: /track Putin trip to China"
            )
        lines = ["Storylines (✓ = this chat follows it):"]
        for r in rows:
            mark = "✓" if r.subscribed else "·"
            kind = "shared" if r.storyline.shared else (
                "yours" if r.created_by == who.chat_id else "other chat's")
            lines.append(f"{mark} #{r.storyline.id} {r.storyline.title} ({kind})")
        lines.append("")
        lines.append("/subscribe ID to follow, /unsubscribe ID to stop.")
        return fit("\n".join(lines))

    async def _subscribe(self, sid: int, who: Caller) -> str:
        # Any active storyline can be followed: ids are shared between chats
        # (a friend says "/subscribe 12"), and /untrack by its creator ends it.
        storyline = await self._run(self._db.get_storyline, sid)
        if storyline is None:
            return f"There is no storyline #{sid}. /storylines lists them."
        if await self._run(self._db.subscribe, who.chat_id, sid, now=self._now()):
            return f"Following #{sid}: {storyline.title}. New developments come here."
        return f"This chat already follows #{sid}: {storyline.title}."

    async def _unsubscribe(self, sid: int, who: Caller) -> str:
        if await self._run(self._db.unsubscribe, who.chat_id, sid):
            return f"Unsubscribed from #{sid}. /subscribe {sid} to follow it again."
        return f"This chat doesn't follow #{sid}. /storylines shows what it follows."

    async def _status(self, who: Caller) -> str:
        feeds = await self._run(self._db.list_feeds)
        last_poll = await self._run(self._db.get_meta, "last_poll")
        counts = await self._run(self._db.outbox_counts)
        failing = [f for f in feeds if f.state.consecutive_errors > 0]
        ok = [f for f in feeds if f.state.consecutive_errors == 0 and f.state.last_ok]
        waiting = len(feeds) - len(failing) - len(ok)
        lines = [
            f"Feeds: {len(ok)} ok, {len(failing)} failing"
            + (f", {waiting} not polled yet" if waiting else "")
            + f" (of {len(feeds)})",
            f"Last poll: {_when(last_poll)}",
            f"Alerts: {counts['sent']} sent, {counts['pending'] + counts['sending']} pending"
            + (f", {counts['failed']} failed" if counts["failed"] else ""),
        ]
        capped = await self._run(self._db.capped_feeds)
        if capped:
            worst = max(capped, key=lambda f: f[2])
            lines.append(
                f"Item cap ({self._settings.file.limits.items_per_feed_poll} a poll): "
                f"{len(capped)} feed(s) over it, e.g. #{worst[0]} skipped {worst[2]:,}"
            )
        internal_total = int(await self._run(self._db.get_meta, INTERNAL_TOTAL_KEY) or 0)
        if internal_total:
            last = await self._run(self._db.get_meta, INTERNAL_LAST_POLL_KEY)
            lines.append(
                f"Internal errors (bot bugs, not the feeds): {last or 0} in the last poll, "
                f"{internal_total} in all"
            )
        if failing and self.is_admin(who.user_id):
            lines.append("")
            lines.append("Failing feeds:")
            for f in failing[:10]:
                lines.append(f"#{f.id} {f.title or f.url}: {f.state.last_error or 'error'}")
        return fit("\n".join(lines))

    async def _feeds_list(self) -> str:
        feeds = await self._run(self._db.list_feeds)
        if not feeds:
            return "No feeds yet. Add one: /addfeed https://example.org/rss"
        lines = [f"{len(feeds)} feed(s):"]
        for f in feeds:
            if f.state.consecutive_errors:
                state = f"failing ×{f.state.consecutive_errors}: {f.state.last_error or 'error'}"
            elif f.state.last_ok:
                state = "ok"
            else:
                state = "not polled yet"
            lines.append(f"#{f.id} {f.title or '(no title)'} — {f.url} — {state}")
        lines.append("")
        lines.append("/removefeed ID removes one; /addfeed URL adds one.")
        return fit("\n".join(lines))

    async def _add_feed(self, url: str, who: Caller) -> str:
        from bot.bootstrap import normalise_feed_url

        try:
            url = normalise_feed_url(url)
            feed, probe = await self._feeds.add_feed(url, added_by=who.user_id)
        except ConfigError:
            return f"That is not an http(s) address: {url[:200]}"
        except DuplicateError:
            return "That feed is already watched. /feeds lists them."
        except BlockedAddressError as exc:
            return f"I won't fetch that address: {exc}"
        except HTTPStatusError as exc:
            return f"Couldn't add it: the server answered HTTP {exc.status}. ({exc})"
        except FetchError as exc:
            return f"Couldn't fetch it: {exc}"
        except ParseError as exc:
            return f"That doesn't look like a feed (RSS, Atom or RDF): {exc}"
        title = probe.title or feed.title or "(no title)"
        return (
            f"Added feed #{feed.id}: {title} with {probe.item_count} item(s).\n"
            "Its current items are stored without alerts; new ones will be matched "
            "from the next poll on."
        )

    async def _remove_feed(self, fid: int) -> str:
        if await self._run(self._db.remove_feed, fid):
            return f"Removed feed #{fid}."
        return f"There is no feed #{fid}. /feeds lists them."


def _when(iso: str | None) -> str:
    if not iso:
        return "not yet"
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    return f"{t:%Y-%m-%d %H:%M:%S} UTC"
