"""Pure parsing of bot commands: text in, a typed command or a helpful error out.

Nothing here talks to Telegram or the database. Handlers call :func:`parse`
and either act on the result or reply with the :class:`UsageError` message,
so a bad argument always gets an answer that says how to do it right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    args: str
    description: str
    example: str
    admin: bool = False


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "", "register this chat and get started", "/start"),
    CommandSpec("help", "", "every command with an example", "/help"),
    CommandSpec(
        "track",
        "TITLE",
        "follow a new storyline (reply to an article to seed it)",
        "/track Putin trip to China",
    ),
    CommandSpec("untrack", "ID", "remove a storyline you created, or unfollow it", "/untrack 3"),
    CommandSpec("storylines", "", "this chat's storylines and the shared ones", "/storylines"),
    CommandSpec("subscribe", "ID", "follow an existing storyline", "/subscribe 3"),
    CommandSpec("unsubscribe", "ID", "stop following a storyline", "/unsubscribe 3"),
    CommandSpec("status", "", "feeds, last poll, alerts sent and pending", "/status"),
    CommandSpec("feeds", "", "list the feeds (admins)", "/feeds", admin=True),
    CommandSpec(
        "addfeed", "URL", "add a feed (admins)", "/addfeed https://example.org/rss", admin=True
    ),
    CommandSpec("removefeed", "ID", "remove a feed (admins)", "/removefeed 2", admin=True),
)
BY_NAME = {c.name: c for c in COMMANDS}

MAX_TITLE_CHARS = 200
MAX_URL_CHARS = 2000
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+|$)(.*)$", re.S)


class UsageError(ValueError):
    """A command with bad arguments; the message is what to tell the user."""


@dataclass(frozen=True, slots=True)
class RawCommand:
    """``/name@bot args`` split up; ``name`` lower-cased."""

    name: str
    args: str
    addressed_to: str | None


def split_command(text: str) -> RawCommand | None:
    """Split a message that starts with a command; ``None`` if it does not."""
    m = _COMMAND_RE.match(text.strip())
    if m is None:
        return None
    return RawCommand(m.group(1).lower(), m.group(3).strip(), m.group(2))


def is_for_me(cmd: RawCommand, bot_username: str | None) -> bool:
    """A command in a group may name another bot (``/start@otherbot``): not ours."""
    if cmd.addressed_to is None or bot_username is None:
        return True
    return cmd.addressed_to.lower() == bot_username.lower()


# -- parsed commands ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Track:
    title: str | None  # None: take it from the replied-to text


@dataclass(frozen=True, slots=True)
class Untrack:
    storyline_id: int


@dataclass(frozen=True, slots=True)
class ListStorylines:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    storyline_id: int


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    storyline_id: int


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class ListFeeds:
    pass


@dataclass(frozen=True, slots=True)
class AddFeed:
    url: str


@dataclass(frozen=True, slots=True)
class RemoveFeed:
    feed_id: int


@dataclass(frozen=True, slots=True)
class Unknown:
    name: str


Command = (
    Start | Help | Track | Untrack | ListStorylines | Subscribe | Unsubscribe | Status
    | ListFeeds | AddFeed | RemoveFeed | Unknown
)


def usage(name: str) -> str:
    spec = BY_NAME[name]
    return f"/{spec.name} {spec.args}".rstrip() + f" — {spec.description}. Example: {spec.example}"


def parse_id(name: str, args: str, what: str) -> int:
    """A single positive integer id, or a :class:`UsageError` saying how to find one."""
    words = args.split()
    if not words:
        raise UsageError(f"Which {what}? {usage(name)}")
    if len(words) > 1:
        raise UsageError(f"Give one {what} id. {usage(name)}")
    token = words[0].lstrip("#")
    if not token.isdecimal() or int(token) <= 0 or len(token) > 12:
        raise UsageError(f"“{words[0][:40]}” is not a {what} id (a number). {usage(name)}")
    return int(token)


def parse_url(args: str) -> str:
    words = args.split()
    if len(words) != 1:
        raise UsageError(f"Give exactly one feed address. {usage('addfeed')}")
    url = words[0].strip("<>")
    if len(url) > MAX_URL_CHARS:
        raise UsageError("That address is too long.")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 bracket)
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"“{url[:80]}” is not an http(s) address. {usage('addfeed')}"
        )
    return url


def parse_title(args: str, *, has_reply: bool) -> str | None:
    title = " ".join(args.split())
    if not title:
        if has_reply:
            return None
        raise UsageError(
            "What should I track? Give a short title, e.g. /track Putin trip to China — "
            "or reply /track to an article to start from its text."
        )
    if len(title) > MAX_TITLE_CHARS:
        raise UsageError(
            f"That title is {len(title)} characters; keep it under {MAX_TITLE_CHARS}. "
            "To start from a long text, reply /track to it instead."
        )
    if len([c for c in title if c.isalnum()]) < 3:
        raise UsageError("Give a title with a few words, e.g. /track Putin trip to China")
    return title


def parse(cmd: RawCommand, *, has_reply: bool = False) -> Command:
    """Turn a split command into a typed one; :class:`UsageError` for bad arguments."""
    n, a = cmd.name, cmd.args
    simple: dict[str, Command] = {
        "start": Start(),
        "help": Help(),
        "storylines": ListStorylines(),
        "status": Status(),
        "feeds": ListFeeds(),
    }
    if n in simple:
        return simple[n]
    if n == "track":
        return Track(parse_title(a, has_reply=has_reply))
    if n == "untrack":
        return Untrack(parse_id(n, a, "storyline"))
    if n == "subscribe":
        return Subscribe(parse_id(n, a, "storyline"))
    if n == "unsubscribe":
        return Unsubscribe(parse_id(n, a, "storyline"))
    if n == "addfeed":
        return AddFeed(parse_url(a))
    if n == "removefeed":
        return RemoveFeed(parse_id(n, a, "feed"))
    return Unknown(n)


def help_text(*, admin: bool) -> str:
    """Plain-text help listing every command (admin ones flagged) with an example."""
    lines = ["Storywatch tells this chat when a storyline you follow moves.", ""]
    for spec in COMMANDS:
        if spec.admin and not admin:
            continue
        head = f"/{spec.name} {spec.args}".rstrip()
        lines.append(f"{head} — {spec.description}\n   e.g. {spec.example}")
    if not admin:
        lines.append("")
        lines.append("Feeds are managed by the bot's admins (/feeds, /addfeed, /removefeed).")
    return "\n".join(lines)
