"""What each bot command does, apart from Telegram: parsed command in, reply out.

The handlers (``bot.telegram.handlers``) parse an update and call
:meth:`ChatService.handle`; this module holds the rules (who may do what, what
a chat may see, the per-chat storyline limit, what a reply says) and talks to
the database and the poller. Each command of ``commands.COMMANDS`` has one
handler here, bound with :func:`handles`; an import-time check fails if one is
missing. Replies are plain text: no parse mode, so nothing a user or a feed
typed can break them.

Privacy: a chat sees (and may follow) only the shared storylines, the ones it
created and the ones it already follows. A storyline it may not see is answered
exactly like one that does not exist, so sequential ids reveal nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

from bot.delivery import schedule, timeline
from bot.delivery.chart import INSTALL_HINT, chart_png
from bot.delivery.render import format_time, tg_len
from bot.errors import (
    BlockedAddressError,
    ConfigError,
    FetchError,
    HTTPStatusError,
    OpmlError,
    ParseError,
)
from bot.feed_import import import_feeds
from bot.health import INTERNAL_LAST_POLL_KEY, INTERNAL_TOTAL_KEY
from bot.models import Feed, Storyline
from bot.observability.logs import BARE_TOKEN
from bot.parsing.article import strip_bylines
from bot.parsing.opml import MAX_OPML_BYTES, OpmlFeed, read_opml, write_opml
from bot.pipeline import ProbeResult
from bot.settings import Settings
from bot.storage.ports import CommandStore
from bot.storage.repository import DuplicateError, StorylineRow
from bot.storylines.facets import describe, parse_title
from bot.storylines.preview import Preview
from bot.telegram import commands as c
from bot.telegram.pages import paginate
from bot.telegram.steering import Steerer, preview_text, track_data

P = ParamSpec("P")
T = TypeVar("T")
MAX_REPLY = 4096
MAX_SEED_CHARS = 20_000


class FeedAdder(Protocol):
    """The part of the poller the commands use (``bot.pipeline.Poller``)."""

    async def add_feed(
        self, url: str, *, added_by: int | None = None, title: str | None = None
    ) -> tuple[Feed, ProbeResult]: ...


class PageReader(Protocol):
    """Reads an article's title and main text from its address (``bot.fetching.article``);
    raises FetchError or ParseError with a message a user can read."""

    async def read(self, url: str) -> tuple[str, str]: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, from where."""

    chat_id: int
    user_id: int | None
    chat_type: str = "private"
    chat_title: str | None = None
    reply_text: str | None = None  # text of the message the command replied to
    group_admin: bool = False  # an administrator of this group (getChatMember)

    @property
    def in_group(self) -> bool:
        return self.chat_type != "private"


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: text, optional inline buttons, and notices for other chats;
    with ``document`` (file name, content), a file whose caption is ``text``."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()
    notices: tuple[tuple[int, str], ...] = ()
    document: tuple[str, bytes] | None = None
    photo: bytes | None = None  # a PNG sent after the text (the /timeline chart)
    photo_caption: str = ""


Handler = Callable[["ChatService", Any, Caller], Awaitable[Reply]]
_HANDLERS: dict[str, Handler] = {}
H = TypeVar("H", bound=Handler)


def handles(name: str) -> Callable[[H], H]:
    """Bind a handler to the command ``name`` of ``commands.COMMANDS``."""

    def bind(fn: H) -> H:
        if name not in c.BY_NAME or name in _HANDLERS:
            raise RuntimeError(f"/{name}: not in commands.COMMANDS, or bound twice")
        _HANDLERS[name] = fn
        return fn

    return bind


GROUP_ADMINS_ONLY = (
    "In groups, only the group's administrators can change what it follows and its "
    "settings. Everyone can read: /storylines, /status, /help."
)


def fit(text: str, limit: int = MAX_REPLY) -> str:
    """Cut a reply to Telegram's length, at a line boundary when possible."""
    if tg_len(text) <= limit:
        return text
    lines = text.split("\n")
    while lines and tg_len("\n".join([*lines, "…"])) > limit:
        lines.pop()
    return "\n".join([*lines, "…"]) if lines else text[: limit // 2] + "…"


class ChatService:
    """Carries out parsed commands for one bot."""

    def __init__(
        self,
        db: CommandStore,
        feeds: FeedAdder,
        settings: Settings,
        *,
        pages: PageReader | None = None,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._feeds = feeds
        self._pages = pages
        self._settings = settings
        self._now = utcnow
        self.steerer = Steerer(db, settings.env.admins, utcnow)

    @property
    def db(self) -> CommandStore:
        return self._db

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._settings.env.admins

    @staticmethod
    def needs_group_admin(cmd: c.Command, who: Caller) -> bool:
        """True if ``cmd`` would change a group's storylines or settings."""
        if not isinstance(cmd, c.Parsed) or not cmd.spec.changes or not who.in_group:
            return False
        reads_only = isinstance(cmd.value, c.Setting) and cmd.value.name is None
        return not reads_only

    @staticmethod
    async def _run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Database calls are short but synchronous: keep them off the event loop.
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def register(self, who: Caller) -> None:
        """Record the chat (again): a chat that blocked the bot and talks to it is active
        again, and subscriptions need the row."""
        await self._run(
            self._db.upsert_chat, who.chat_id, now=self._now(), type_=who.chat_type,
            title=who.chat_title,
        )

    async def leave(self, chat_id: int, reason: str) -> None:
        """The chat removed or blocked the bot: nothing more is sent there."""
        await self._run(self._db.deactivate_chat, chat_id, reason)

    async def migrate(self, old_id: int, new_id: int) -> None:
        """A group became a supergroup: everything it had is the supergroup's now."""
        await self._run(self._db.migrate_chat, old_id, new_id)
        await self._run(
            self._db.upsert_chat, new_id, now=self._now(), type_="supergroup", title=None
        )

    async def handle(self, cmd: c.Command, who: Caller) -> Reply:
        """The reply to ``cmd``; never raises for a user mistake."""
        await self.register(who)
        if isinstance(cmd, c.Unknown):
            return Reply(f"I don't know /{cmd.name[:40]}. /help lists what I can do.")
        if cmd.spec.admin and not self.is_admin(who.user_id):
            if cmd.name in ("feeds", "addfeed", "removefeed", "export"):
                return Reply("Sorry, only the bot's admins can manage feeds. "
                             "/status shows how the feeds are doing.")
            return Reply(f"Sorry, only the bot's admins can use /{cmd.name}.")
        if self.needs_group_admin(cmd, who) and not who.group_admin:
            return Reply(GROUP_ADMINS_ONLY)
        return await _HANDLERS[cmd.name](self, cmd.value, who)

    async def page(self, list_name: str, number: int, who: Caller) -> Reply | None:
        """Page ``number`` of a long list (an inline button was pressed); None if unknown."""
        if list_name == "storylines":
            return await self._list(who, number)
        if list_name == "feeds" and self.is_admin(who.user_id):
            return await self._feeds_list(number)
        if list_name.startswith("timeline."):
            sid = list_name.removeprefix("timeline.")
            if sid.isdecimal() and len(sid) <= 12:
                return await self._timeline_page(int(sid), number, who, chart=False)
        return None

    async def delivery_button(self, mode: str, who: Caller) -> Reply | None:
        """A delivery button under /settings was pressed (group admins checked by the
        handler); None for a button this bot does not know."""
        if mode not in ("instant", "digest", "quiet"):
            return None
        confirmation = await self._settings_cmd(c.Setting(mode), who)
        overview = await self._settings_cmd(c.Setting(None), who)
        return Reply(f"{confirmation.text}\n\n{overview.text}", overview.buttons)

    # -- commands -----------------------------------------------------------

    @handles("start")
    async def _start(self, _: None, who: Caller) -> Reply:
        return Reply(self.welcome(who.in_group))

    @staticmethod
    def welcome(group: bool) -> str:
        where = "this group" if group else "you"
        extra = (
            "\nIn this group everyone can read; the group's administrators choose what it "
            "follows." if group else ""
        )
        return (
            f"Welcome to Storywatch! I'll tell {where} when a news storyline you follow moves.\n\n"
            "Next: follow a story with\n/track Putin trip to China\n"
            "or reply /track to an article (or give its link) to start from its text.\n"
            "/storylines shows the shared storylines you can /subscribe to; "
            f"/help lists every command.{extra}"
        )

    @handles("help")
    async def _help(self, _: None, who: Caller) -> Reply:
        return Reply(fit(c.help_text(admin=self.is_admin(who.user_id))))

    @handles("track")
    async def _track(self, title: str | c.Link | None, who: Caller) -> Reply:
        refused = await self._may_create(title if isinstance(title, str) else None, who)
        if refused is not None:
            return refused
        seed = strip_bylines((who.reply_text or "").strip()[:MAX_SEED_CHARS])
        if BARE_TOKEN.search(title if isinstance(title, str) else "") or BARE_TOKEN.search(seed):
            # Stored, it would be split into "names" and terms that no log
            # redaction recognises as a secret any more (and echoed in replies).
            return Reply(
                "That looks like a Telegram bot token, so I won't store it or track it. "
                "If it is a real token, revoke it with @BotFather (/revoke)."
            )
        if title is None and (url := c.link_in(seed)) is not None:
            title = c.Link(url)
        if isinstance(title, str) and not seed:
            return await self._preview_track(title, who)
        source = "the message you replied to"
        if isinstance(title, c.Link):
            read = await self._read_page(title.url)
            if isinstance(read, Reply):
                return read
            page_title, seed = read
            title, source = None, "the page at that link"
            if page_title and c.title_words(page_title):
                title = " ".join(page_title.split())[: c.MAX_TITLE_CHARS]
        aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
        keywords: tuple[str, ...] = ()
        if title is None:
            if not seed:
                return Reply(
                    "Reply /track to a message with text, or give a title: /track Putin trip"
                )
            proposal = await self._propose(seed)
            if proposal is None:
                return Reply(
                    f"I couldn't find a storyline in {source}. Give it a title: "
                    "/track Putin trip to China (as a reply, the text still seeds it)."
                )
            title, aliases, keywords = proposal
        # Seeded from an article the user chose: created at once (what it looks for is
        # shown, and /untrack undoes it); a title alone is previewed first.
        return await self._create(
            Storyline(id=0, title=title, seed_text=seed, aliases=aliases, keywords=keywords),
            who, f" (seeded from {source})")

    async def _may_create(self, title: str | None, who: Caller) -> Reply | None:
        """Why this chat may not track ``title`` now (its limit, or it tracks it
        already); None if it may."""
        limit = self._settings.file.limits.storylines_per_chat
        count = await self._run(self._db.count_storylines_created_by, who.chat_id)
        if count >= limit:
            return Reply(
                f"This chat already has {count} storylines (the limit is {limit}). "
                "Remove one with /untrack ID first; /storylines lists them."
            )
        if title is not None:
            existing = await self._run(self._db.find_storyline_by_title, who.chat_id, title)
            if existing is not None:
                return Reply(
                    f"This chat already tracks #{existing.id}: {existing.title}. "
                    f"Alerts for it come here; /untrack {existing.id} stops it."
                )
        return None

    async def _create(self, draft: Storyline, who: Caller, seeded: str = "") -> Reply:
        storyline = await self._run(
            self._db.add_storyline, draft, now=self._now(), created_by=who.chat_id,
        )
        await self._run(self._db.subscribe, who.chat_id, storyline.id, now=self._now())
        looks_for = describe(parse_title(storyline.title, storyline.aliases))
        return Reply(fit(
            f"Tracking #{storyline.id}: {storyline.title}{seeded if draft.seed_text else ''}\n"
            f"I'll look for:\n{looks_for}\n\n"
            f"Alerts come to this chat. /untrack {storyline.id} stops it."
        ))

    async def _preview(self, title: str) -> tuple[Storyline, Preview]:
        """The storyline ``title`` would be, and its preview. Typed without capitals, it
        is tracked (and shown) with them: "Putin trip to China" reads the same to the
        matcher and better in alerts."""
        found = await self.steerer.preview(Storyline(id=0, title=title))
        return Storyline(id=0, title=found.title or title), found

    async def _preview_track(self, title: str, who: Caller) -> Reply:
        """``/track TITLE``: what it would have caught, with Track it / Cancel (and
        Follow #N instead where a shared storyline is close); nothing is created yet."""
        trial, found = await self._preview(title)
        title = trial.title
        token = await self._run(self._db.add_pending_track, chat_id=who.chat_id,
                                  user_id=who.user_id, title=title, now=self._now())
        buttons = [("Track it", track_data(token, "keep")),
                   ("Cancel", track_data(token, "cancel"))]
        buttons += [(f"Follow #{s.id} instead", track_data(token, f"f{s.id}"))
                    for s in found.close[:1]]
        return Reply(fit(
            f"Preview of “{title}” (not tracked yet):\n{preview_text(trial, found)}\n\n"
            "Track it to get its alerts in this chat."
        ), tuple(buttons))

    @handles("test")
    async def _test(self, title: str | c.Link | None, who: Caller) -> Reply:
        if not isinstance(title, str):
            return Reply("Give /test a title, e.g. /test Putin trip to China")
        trial, found = await self._preview(title)
        title = trial.title
        return Reply(fit(f"Preview of “{title}” (nothing created):\n"
                         f"{preview_text(trial, found)}\n\n/track {title} follows it."))

    @handles("mute")
    async def _mute(self, choice: c.Choice, who: Caller) -> Reply:
        if await self._visible(choice.storyline_id, who.chat_id) is None:
            return self._no_such(choice.storyline_id)
        tz = await self._run(self._db.chat_tz, who.chat_id)
        return Reply(await self.steerer.mute(who.chat_id, choice.storyline_id, choice.choice, tz))

    @handles("sensitivity")
    async def _sensitivity(self, choice: c.Choice, who: Caller) -> Reply:
        row = await self._visible(choice.storyline_id, who.chat_id)
        if row is None:
            return self._no_such(choice.storyline_id)
        mine = row.created_by == who.chat_id and not row.storyline.shared
        if choice.choice is not None and not mine and not self.is_admin(who.user_id):
            return Reply(f"#{row.storyline.id} is not this chat's own storyline; only the bot's "
                         "admins set a shared one's sensitivity. /mute mutes it here.")
        return Reply(await self.steerer.sensitivity(row.storyline, choice.choice))

    async def track_press(self, token: int, action: str, who: Caller) -> Reply | None:
        """A preview's button (Track it / Cancel / Follow #N instead); None if the
        preview is not this chat's, or was decided already."""
        title = await self._run(self._db.take_pending_track, token, who.chat_id)
        if title is None:
            return None
        if action == "cancel":
            return Reply(f"Cancelled: “{title}” is not tracked.")
        if action == "keep":
            refused = await self._may_create(title, who)
            return refused or await self._create(Storyline(id=0, title=title), who)
        return await self._subscribe(int(action[1:]), who)

    async def _read_page(self, url: str) -> tuple[str, str] | Reply:
        if self._pages is None:
            return Reply("I can't read links here. Give a title: /track Putin trip to China")
        try:
            return await self._pages.read(url)
        except BlockedAddressError as exc:
            return Reply(f"I won't fetch that address: {exc}")
        except HTTPStatusError as exc:
            return Reply(f"Couldn't read that page: the server answered HTTP {exc.status}.")
        except (FetchError, ParseError) as exc:
            return Reply(f"Couldn't read that page: {exc}")

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

    async def _visible(self, storyline_id: int, chat_id: int) -> StorylineRow | None:
        """The storyline if this chat may see it (shared, created here, or followed)."""
        rows = await self._run(self._db.storylines_for_chat, chat_id)
        return next((r for r in rows if r.storyline.id == storyline_id), None)

    @staticmethod
    def _no_such(sid: int) -> Reply:
        return Reply(f"There is no storyline #{sid} you can see. /storylines lists them.")

    @handles("untrack")
    async def _untrack(self, sid: int, who: Caller) -> Reply:
        row = await self._visible(sid, who.chat_id)
        if row is None:
            return self._no_such(sid)
        s = row.storyline
        others = [f for f in await self._run(self._db.followers, sid) if f != who.chat_id]
        if row.created_by == who.chat_id and not s.shared and not others:
            await self._run(self._db.deactivate_storyline, sid)
            return Reply(f"Removed storyline #{sid}: {s.title}.")
        if await self._run(self._db.unsubscribe, who.chat_id, sid):
            stays = (
                f"It stays for the {len(others)} other chat(s) that follow it."
                if others else "It stays listed for every chat (it is shared)."
            )
            return Reply(f"This chat no longer follows #{sid}: {s.title}. {stays}")
        return Reply(f"This chat doesn't follow #{sid}. /storylines shows what it follows.")

    @handles("storylines")
    async def _storylines(self, _: None, who: Caller) -> Reply:
        return await self._list(who, 1)

    async def _list(self, who: Caller, number: int) -> Reply:
        rows = await self._run(self._db.storylines_for_chat, who.chat_id)
        if not rows:
            return Reply(
                "This chat follows no storylines and there are no shared ones yet. "
                "Start one: /track Putin trip to China"
            )
        lines = []
        for r in rows:
            mark = "✓" if r.subscribed else "·"
            kind = "shared" if r.storyline.shared else (
                "this chat's" if r.created_by == who.chat_id else "followed")
            extra = "" if r.sensitivity == "normal" else f", {r.sensitivity}"
            if r.muted_until is not None and r.muted_until > self._now():
                extra += ", 🔕 muted" + ("" if r.muted_until.year >= 9999
                                         else f" until {format_time(r.muted_until)}")
            lines.append(f"{mark} #{r.storyline.id} {r.storyline.title} ({kind}{extra})")
        page = paginate(
            "storylines", f"Storylines (✓ = this chat follows it), {len(rows)} in all", lines,
            "/subscribe ID to follow, /unsubscribe ID to stop.", number,
        )
        return Reply(page.text, page.buttons)

    @handles("subscribe")
    async def _subscribe(self, sid: int, who: Caller) -> Reply:
        row = await self._visible(sid, who.chat_id)
        if row is None:
            return self._no_such(sid)
        title = row.storyline.title
        if await self._run(self._db.subscribe, who.chat_id, sid, now=self._now()):
            return Reply(f"Following #{sid}: {title}. New developments come here.")
        return Reply(f"This chat already follows #{sid}: {title}.")

    @handles("unsubscribe")
    async def _unsubscribe(self, sid: int, who: Caller) -> Reply:
        if await self._run(self._db.unsubscribe, who.chat_id, sid):
            return Reply(f"Unsubscribed from #{sid}. /subscribe {sid} to follow it again.")
        return Reply(f"This chat doesn't follow #{sid}. /storylines shows what it follows.")

    @handles("share")
    async def _share(self, sid: int, who: Caller) -> Reply:
        s = await self._run(self._db.get_storyline, sid)
        if s is None:
            return Reply(f"There is no storyline #{sid}.")
        if not await self._run(self._db.set_shared, sid):
            return Reply(f"#{sid}: {s.title} is shared already.")
        return Reply(f"Shared #{sid}: {s.title}. Every chat now sees it in /storylines.")

    @handles("delete")
    async def _delete(self, sid: int, who: Caller) -> Reply:
        s = await self._run(self._db.get_storyline, sid)
        if s is None:
            return Reply(f"There is no storyline #{sid}.")
        followers = await self._run(self._db.followers, sid)
        await self._run(self._db.deactivate_storyline, sid)
        told = [f for f in followers if f != who.chat_id]
        notice = (
            f"The bot's admins deleted storyline #{sid}: {s.title}. "
            "This chat gets no more alerts for it; /storylines lists what is left."
        )
        return Reply(
            f"Deleted storyline #{sid}: {s.title} for everyone. "
            f"Told the {len(told)} other chat(s) that followed it.",
            notices=tuple((f, notice) for f in told),
        )

    @handles("settings")
    async def _settings_cmd(self, setting: c.Setting, who: Caller) -> Reply:
        if setting.name is None:
            return await self._settings_overview(who)
        if setting.name != "tz":
            return await self._delivery_setting(setting, who)
        name = setting.value
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            return Reply(
                f"“{name[:60]}” is not a time zone I know. Use a name like Europe/Paris, "
                "America/New_York or UTC."
            )
        await self._run(self._db.set_chat_tz, who.chat_id, None if name == "UTC" else name)
        now = format_time(self._now(), name)
        return Reply(f"Alert times in this chat are now in {name} (it is {now}).")

    @handles("status")
    async def _status(self, _: None, who: Caller) -> Reply:
        mine = await self._run(self._db.chat_figures, who.chat_id)
        held = await self._run(self._db.held_count, who.chat_id)
        tz = await self._run(self._db.chat_tz, who.chat_id)
        feeds = await self._run(self._db.list_feeds)
        last_poll = await self._run(self._db.get_meta, "last_poll")
        counts = await self._run(self._db.outbox_counts)
        failing = [f for f in feeds if f.state.consecutive_errors > 0]
        ok = [f for f in feeds if f.state.consecutive_errors == 0 and f.state.last_ok]
        waiting = len(feeds) - len(failing) - len(ok)
        lines = [
            f"This chat: follows {mine.following} storyline(s), {mine.created} created here",
            f"Alerts here: {mine.sent} sent, {mine.pending} pending"
            + (f" ({held} waiting for a digest)" if held else "")
            + (f", {mine.failed} failed" if mine.failed else ""),
            "",
            f"Bot: feeds {len(ok)} ok, {len(failing)} failing"
            + (f", {waiting} not polled yet" if waiting else "")
            + f" (of {len(feeds)}); last poll {_when(last_poll, tz)}; "
            f"alerts {counts['sent']} sent, {counts['pending'] + counts['sending']} pending"
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
        return Reply(fit("\n".join(lines)))

    @handles("feeds")
    async def _feeds_cmd(self, _: None, who: Caller) -> Reply:
        return await self._feeds_list(1)

    async def _feeds_list(self, number: int) -> Reply:
        feeds = await self._run(self._db.list_feeds)
        if not feeds:
            return Reply("No feeds yet. Add one: /addfeed https://example.org/rss")
        lines = []
        for f in feeds:
            if f.state.consecutive_errors:
                state = f"failing ×{f.state.consecutive_errors}: {f.state.last_error or 'error'}"
            elif f.state.last_ok:
                state = "ok"
            else:
                state = "not polled yet"
            lines.append(f"#{f.id} {f.title or '(no title)'} — {f.url} — {state}")
        page = paginate(
            "feeds", f"{len(feeds)} feed(s)", lines,
            "/removefeed ID removes one; /addfeed URL adds one.", number,
        )
        return Reply(page.text, page.buttons)

    @handles("addfeed")
    async def _add_feed(self, url: str, who: Caller) -> Reply:
        from bot.bootstrap import normalise_feed_url

        try:
            url = normalise_feed_url(url)
            feed, probe = await self._feeds.add_feed(url, added_by=who.user_id)
        except ConfigError:
            return Reply(f"That is not an http(s) address: {url[:200]}")
        except DuplicateError:
            return Reply("That feed is already watched. /feeds lists them.")
        except BlockedAddressError as exc:
            return Reply(f"I won't fetch that address: {exc}")
        except HTTPStatusError as exc:
            return Reply(f"Couldn't add it: the server answered HTTP {exc.status}. ({exc})")
        except FetchError as exc:
            return Reply(f"Couldn't fetch it: {exc}")
        except ParseError as exc:
            return Reply(f"That doesn't look like a feed (RSS, Atom or RDF): {exc}")
        title = probe.title or feed.title or "(no title)"
        return Reply(
            f"Added feed #{feed.id}: {title} with {probe.item_count} item(s).\n"
            "Its current items are stored without alerts; new ones will be matched "
            "from the next poll on."
        )

    @handles("removefeed")
    async def _remove_feed(self, fid: int, who: Caller) -> Reply:
        if await self._run(self._db.remove_feed, fid):
            return Reply(f"Removed feed #{fid}.")
        return Reply(f"There is no feed #{fid}. /feeds lists them.")


    @handles("export")
    async def _export(self, _: None, who: Caller) -> Reply:
        feeds = await self._run(self._db.list_feeds)
        if not feeds:
            return Reply("There are no feeds to export. Add one: /addfeed https://example.org/rss")
        document = write_opml(
            [OpmlFeed(f.url, f.title) for f in feeds], title="Storywatch feeds", created=self._now()
        )
        return Reply(
            f"{len(feeds)} feed(s) as OPML 2.0. Send this file to a Storywatch bot to import them.",
            document=(EXPORT_FILE_NAME, document),
        )

    # -- an uploaded feed list -----------------------------------------------

    def upload_refusal(self, who: Caller, size: int | None) -> Reply | None:
        """Why an uploaded document is not taken before it is downloaded, or None: only
        the bot's admins send feed lists, and a file over the limit is not fetched."""
        if not self.is_admin(who.user_id):
            return Reply(
                "Sorry, I only take files from the bot's admins: an OPML list of feeds to "
                "import. To follow a story, use /track; /help lists everything."
            )
        if size is not None and size > MAX_OPML_BYTES:
            return Reply(
                f"That file is {size:,} bytes; an OPML feed list may be at most "
                f"{MAX_OPML_BYTES:,} (1 MB). Nothing was imported."
            )
        return None

    async def import_opml(self, data: bytes, who: Caller) -> Reply:
        """Import the feeds of an uploaded OPML file; one summary reply. A file that is
        not a usable OPML list is refused as a whole and changes nothing."""
        await self.register(who)
        refusal = self.upload_refusal(who, len(data))
        if refusal is not None:
            return refusal
        try:
            feeds = await asyncio.to_thread(read_opml, data)
        except OpmlError as exc:
            return Reply(f"I can't import that file: {str(exc).rstrip('.')}. Nothing was changed.")
        watched = {f.url for f in await self._run(self._db.list_feeds)}
        report = await import_feeds(self._feeds, feeds, watched, added_by=who.user_id)
        return Reply(fit(report.describe(per_section=IMPORT_LINES_SHOWN)))


    # -- delivery settings and the timeline (issue 17) -------------------------

    async def _settings_overview(self, who: Caller) -> Reply:
        d = await self._run(self._db.chat_delivery, who.chat_id)
        only = await self._run(self._db.digest_only_storylines, who.chat_id)
        held = await self._run(self._db.held_count, who.chat_id)
        lines = [
            "Settings of this chat:",
            f"tz: {d.tz or 'UTC'} (the time zone of alert and digest times)",
            f"delivery: {schedule.describe(d)}",
            "digest only: " + (", ".join(f"#{i} {t}" for i, t in only) if only else "none")
            + (f" (at {schedule.format_times(d.digest_times)})" if only and d.mode == "instant"
               else ""),
        ]
        if held:
            lines.append(f"waiting for the next digest: {held} alert(s)")
        lines += [
            "",
            "Choose below, or: /settings instant · /settings digest 08:00, 18:00 · "
            "/settings quiet 22:00-07:00 · /settings digestonly ID on|off · "
            f"{c.BY_NAME['settings'].example}",
        ]
        labels = {"instant": "Instant", "digest": "Digest", "quiet": "Quiet hours"}
        buttons = tuple(
            (("✓ " if d.mode == mode else "") + label, f"{SETTINGS_BUTTON}:{mode}")
            for mode, label in labels.items()
        )
        return Reply(fit("\n".join(lines)), buttons)

    async def _delivery_setting(self, setting: c.Setting, who: Caller) -> Reply:
        if setting.name == "digestonly":
            sid_text, state = setting.value.split()
            sid, on = int(sid_text), state == "on"
            row = await self._visible(sid, who.chat_id)
            if row is None:
                return self._no_such(sid)
            if not await self._run(self._db.set_digest_only, who.chat_id, sid, on):
                return Reply(f"This chat doesn't follow #{sid}. /subscribe {sid} first.")
            d = await self._run(self._db.chat_delivery, who.chat_id)
            if not on:
                return Reply(f"#{sid}: {row.storyline.title} follows this chat's delivery "
                             f"again ({schedule.describe(d)}).")
            return Reply(f"#{sid}: {row.storyline.title} now comes only in digests, at "
                         f"{schedule.format_times(schedule.slot_times(d))} ({d.tz or 'UTC'}).")
        mode = str(setting.name)
        await self._run(
            self._db.set_chat_delivery, who.chat_id, mode,
            times=setting.value or None if mode == "digest" else None,
            quiet=setting.value or None if mode == "quiet" else None,
        )
        d = await self._run(self._db.chat_delivery, who.chat_id)
        zone_name = d.tz or "UTC"
        if mode == "instant":
            waited = await self._run(self._db.held_count, who.chat_id)
            built = await self._run(self._db.build_digest_now, who.chat_id, self._now())
            extra = (f" The {waited} alert(s) that were waiting come now, as one digest."
                     if built is not None else "")
            return Reply(f"Alerts now come to this chat as they happen.{extra}")
        first = format_time(schedule.next_slot(d, self._now()), d.tz)
        if mode == "digest":
            return Reply(
                f"Alerts in this chat now come as one digest at "
                f"{schedule.format_times(d.digest_times)} ({zone_name}); the next is at {first}."
            )
        q = d.quiet_hours
        return Reply(
            f"Quiet hours {schedule.format_quiet(q)} ({zone_name}): alerts in those hours wait "
            f"and come as one digest at {q[1]:%H:%M}; at other times they come at once."
        )

    @handles("timeline")
    async def _timeline(self, sid: int, who: Caller) -> Reply:
        return await self._timeline_page(sid, 1, who, chart=True)

    async def _timeline_page(self, sid: int, number: int, who: Caller, *, chart: bool
                             ) -> Reply:
        row = await self._visible(sid, who.chat_id)
        if row is None:
            return self._no_such(sid)
        title = row.storyline.title
        rows = await self._run(self._db.timeline, sid)
        tz = await self._run(self._db.chat_tz, who.chat_id)
        if not rows:
            return Reply(f"#{sid} {title} has no developments yet. Alerts come here when it "
                         "moves.")
        photo: bytes | None = None
        if len(rows) < timeline.CHART_MIN:
            footer = f"A chart of developments per day comes with {timeline.CHART_MIN} or more."
        elif chart:
            photo = await self._run(chart_png, timeline.per_day(rows, tz), f"#{sid} {title}",
                                    short=f"#{sid}")
            footer = ("The chart below counts developments per day." if photo is not None else
                      "No chart: this bot was installed without its charts extra "
                      f"({INSTALL_HINT}).")
        else:
            footer = ""
        page = paginate(f"timeline.{sid}", timeline.header(sid, title, len(rows)),
                        timeline.lines(rows, tz), footer, number)
        caption = f"#{sid} {title}: developments per day ({tz or 'UTC'})"
        return Reply(page.text, page.buttons, photo=photo, photo_caption=fit(caption, 1024))



EXPORT_FILE_NAME = "storywatch-feeds.opml"
# Lines of each list (failed, added, already watched) an import summary shows in a chat.
IMPORT_LINES_SHOWN = 25
# Callback data prefix of the /settings delivery buttons.
SETTINGS_BUTTON = "set"

_UNBOUND = set(c.BY_NAME) ^ set(_HANDLERS)
if _UNBOUND:  # pragma: no cover - a command added to the table without a handler
    raise RuntimeError(f"commands without a handler (or handlers without a command): {_UNBOUND}")


def _when(iso: str | None, tz: str | None = None) -> str:
    if not iso:
        return "not yet"
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return format_time(t, tz) or iso
