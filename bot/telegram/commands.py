"""The bot's command table and its pure parsing: text in, a parsed command or a helpful error out.

Nothing here talks to Telegram or the database. :data:`COMMANDS` is the one
registry of commands: each row says the command's name, its argument, who may
use it and how to explain it, and help, the command menus, argument parsing and
the permission checks are all derived from it. The service binds one handler
per row (``bot.telegram.service``) and checks at import that none is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from bot.delivery.schedule import format_quiet, format_times, parse_quiet, parse_times
from bot.storylines.text import STOPWORDS


class Arg(Enum):
    """What a command takes after its name."""

    NONE = "none"
    STORYLINE = "storyline"  # one storyline id
    FEED = "feed"  # one feed id
    URL = "url"  # one http(s) address
    TITLE = "title"  # a storyline title, or a link; nothing if it answers a message
    SETTING = "setting"  # "NAME VALUE", or nothing to list the settings
    CHOICE = "choice"  # a storyline id and one of the command's CHOICES


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    args: str
    description: str
    example: str
    arg: Arg = Arg.NONE
    admin: bool = False  # only the bot's admins (STORYWATCH_ADMINS)
    changes: bool = False  # changes the chat's storylines or settings: group admins only


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "", "register this chat and get started", "/start"),
    CommandSpec("help", "", "every command with an example", "/help"),
    CommandSpec(
        "track", "TITLE or LINK",
        "follow a new storyline (or reply to an article, or give its link)",
        "/track Putin trip to China", arg=Arg.TITLE, changes=True,
    ),
    CommandSpec(
        "untrack", "ID", "stop this chat's storyline (or stop following one)", "/untrack 3",
        arg=Arg.STORYLINE, changes=True,
    ),
    CommandSpec("storylines", "", "this chat's storylines and the shared ones", "/storylines"),
    CommandSpec(
        "subscribe", "ID", "follow a shared storyline", "/subscribe 3",
        arg=Arg.STORYLINE, changes=True,
    ),
    CommandSpec(
        "unsubscribe", "ID", "stop following a storyline", "/unsubscribe 3",
        arg=Arg.STORYLINE, changes=True,
    ),
    CommandSpec(
        "settings", "[tz ZONE | instant | digest TIMES | quiet START-END | digestonly ID on|off]",
        "this chat's settings: time zone, instant alerts, digests at set times, quiet hours",
        "/settings tz Europe/Paris", arg=Arg.SETTING, changes=True,
    ),
    CommandSpec(
        "timeline", "ID", "a storyline's developments, dated, with a chart per day",
        "/timeline 3", arg=Arg.STORYLINE,
    ),
    CommandSpec("status", "", "this chat's storylines and alerts, and the bot's health", "/status"),
    CommandSpec(
        "test", "TITLE", "preview a storyline: what it looks for and what it would have "
        "matched this week, creating nothing", "/test Putin trip to China", arg=Arg.TITLE,
    ),
    CommandSpec(
        "mute", "ID [1d|1w|off]", "mute a storyline in this chat for a day, a week, or until "
        "/mute ID off", "/mute 3 1d", arg=Arg.CHOICE, changes=True,
    ),
    CommandSpec(
        "sensitivity", "ID strict|normal|broad",
        "how readily a storyline alerts (strict: fewer, broad: more)", "/sensitivity 3 strict",
        arg=Arg.CHOICE, changes=True,
    ),
    CommandSpec("feeds", "", "list the feeds (admins)", "/feeds", admin=True),
    CommandSpec(
        "addfeed", "URL", "add a feed (admins)", "/addfeed https://example.org/rss",
        arg=Arg.URL, admin=True,
    ),
    CommandSpec("removefeed", "ID", "remove a feed (admins)", "/removefeed 2",
                arg=Arg.FEED, admin=True),
    CommandSpec("export", "", "the feeds as an OPML file (admins; send one back to import)",
                "/export", admin=True),
    CommandSpec("share", "ID", "list a storyline for every chat (admins)", "/share 7",
                arg=Arg.STORYLINE, admin=True),
    CommandSpec(
        "delete", "ID", "delete a storyline for all its followers, telling them (admins)",
        "/delete 7", arg=Arg.STORYLINE, admin=True,
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}

MAX_TITLE_CHARS = 200
MAX_URL_CHARS = 2000
_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+|$)(.*)$", re.S)
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
# Words that fit every story: a title made only of these and stopwords names nothing.
GENERIC_WORDS = frozenset({
    "news", "latest", "breaking", "update", "updates", "story", "stories", "headline",
    "headlines", "live", "world", "article", "articles", "things", "stuff", "everything",
    "anything",
})


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
class Link:
    """``/track URL``: a page to read the storyline from."""

    url: str


@dataclass(frozen=True, slots=True)
class Setting:
    """``/settings NAME VALUE``; ``name`` None lists the settings."""

    name: str | None
    value: str = ""


@dataclass(frozen=True, slots=True)
class Choice:
    """``/mute 3 1d``, ``/sensitivity 3 strict``: a storyline and one of the command's
    :data:`CHOICES`; ``choice`` None when none was given."""

    storyline_id: int
    choice: str | None = None


# The words each CHOICE command takes after the id (the first is what none means
# for /mute: until unmuted, written "on").
CHOICES: dict[str, tuple[str, ...]] = {
    "mute": ("1d", "1w", "off"),
    "sensitivity": ("strict", "normal", "broad"),
}

Value = int | str | Link | Setting | Choice | None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A known command and its checked argument (``None`` when it takes none, or for
    ``/track`` in reply to a message: the replied-to text seeds it)."""

    spec: CommandSpec
    value: Value = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Unknown:
    name: str


Command = Parsed | Unknown


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


def link_in(text: str) -> str | None:
    """The http(s) address if ``text`` is one address and nothing else."""
    words = text.split()
    if len(words) != 1:
        return None
    url = words[0].strip("<>")
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        return url
    return None


def parse_url(args: str) -> str:
    words = args.split()
    if len(words) != 1:
        raise UsageError(f"Give exactly one feed address. {usage('addfeed')}")
    url = words[0].strip("<>")
    if len(url) > MAX_URL_CHARS:
        raise UsageError("That address is too long.")
    if link_in(url) is None:
        raise UsageError(
            f"“{url[:80]}” is not an http(s) address. {usage('addfeed')}"
        )
    return url


def title_words(title: str) -> list[str]:
    """The words of a title that can identify a story (not "the", "of", "news"...)."""
    return [
        w for w in _WORD_RE.findall(title.lower())
        if w not in STOPWORDS and w not in GENERIC_WORDS and len(w) > 1
    ]


def parse_title(args: str, *, has_reply: bool) -> str | Link | None:
    title = " ".join(args.split())
    if not title:
        if has_reply:
            return None
        raise UsageError(
            "What should I track? Give a short title, e.g. /track Putin trip to China — "
            "or a link to an article, or reply /track to an article to start from its text."
        )
    url = link_in(title)
    if url is not None:
        if len(url) > MAX_URL_CHARS:
            raise UsageError("That address is too long.")
        return Link(url)
    if any(link_in(word) or "://" in word for word in title.split()):
        # A link inside a title would make its host, path and fragment look like words
        # of the story ("www", "com", "http").
        raise UsageError(
            "Give either a title or one link, not both: /track Putin trip to China, or "
            "/track https://example.org/article"
        )
    if len(title) > MAX_TITLE_CHARS:
        raise UsageError(
            f"That title is {len(title)} characters; keep it under {MAX_TITLE_CHARS}. "
            "To start from a long text, reply /track to it instead."
        )
    if len([c for c in title if c.isalnum()]) < 3:
        raise UsageError("Give a title with a few words, e.g. /track Putin trip to China")
    if not title_words(title):
        raise UsageError(
            f"“{title[:80]}” has only words like “the” or “news” that fit any story. "
            "Name who or what it is about, e.g. /track Putin trip to China"
        )
    return title


SETTING_NAMES = ("tz", "instant", "digest", "quiet", "digestonly")


def parse_setting(args: str) -> Setting:
    """``tz ZONE``, ``instant``, ``digest [08:00, 18:00]``, ``quiet [22:00-07:00]`` or
    ``digestonly ID on|off``; times are checked here, zones by the service."""
    words = args.split()
    if not words:
        return Setting(None)
    name = words[0].lower()
    rest = " ".join(words[1:])
    if name not in SETTING_NAMES:
        raise UsageError(
            f"I know these settings: {', '.join(SETTING_NAMES)}. {usage('settings')}"
        )
    if name == "tz":
        if len(words) != 2:
            raise UsageError(f"Give one time zone name. {usage('settings')}")
        return Setting("tz", words[1])
    if name == "instant":
        if rest:
            raise UsageError("/settings instant takes nothing after it.")
        return Setting("instant")
    try:
        if name == "digest":
            return Setting("digest", format_times(parse_times(rest)) if rest else "")
        if name == "quiet":
            return Setting("quiet", format_quiet(parse_quiet(rest)) if rest else "")
    except ValueError as exc:
        example = "08:00, 18:00" if name == "digest" else "22:00-07:00"
        raise UsageError(f"{exc}. Example: /settings {name} {example}") from None
    if len(words) != 3 or words[2].lower() not in ("on", "off"):
        raise UsageError("Say which storyline and on or off, e.g. /settings digestonly 3 on")
    sid = parse_id("settings", words[1], "storyline")
    return Setting("digestonly", f"{sid} {words[2].lower()}")


def parse_choice(name: str, args: str) -> Choice:
    words = args.split()
    if not words:
        raise UsageError(f"Which storyline? {usage(name)}")
    sid = parse_id(name, words[0], "storyline")
    if len(words) == 1:
        return Choice(sid)
    options = CHOICES[name]
    word = words[1].lower()
    if len(words) > 2 or word not in options:
        raise UsageError(f"After the id, give one of {', '.join(options)}. {usage(name)}")
    return Choice(sid, word)


def parse(cmd: RawCommand, *, has_reply: bool = False) -> Command:
    """Turn a split command into a parsed one; :class:`UsageError` for bad arguments."""
    spec = BY_NAME.get(cmd.name)
    if spec is None:
        return Unknown(cmd.name)
    a = cmd.args
    match spec.arg:
        case Arg.NONE:
            return Parsed(spec)
        case Arg.STORYLINE:
            return Parsed(spec, parse_id(spec.name, a, "storyline"))
        case Arg.FEED:
            return Parsed(spec, parse_id(spec.name, a, "feed"))
        case Arg.URL:
            return Parsed(spec, parse_url(a))
        case Arg.TITLE:
            return Parsed(spec, parse_title(a, has_reply=has_reply))
        case Arg.SETTING:
            return Parsed(spec, parse_setting(a))
        case Arg.CHOICE:
            return Parsed(spec, parse_choice(spec.name, a))
    raise AssertionError(f"unhandled argument kind {spec.arg}")  # pragma: no cover


def help_text(*, admin: bool) -> str:
    """Plain-text help listing every command (admin ones flagged) with an example."""
    lines = ["Storywatch tells this chat when a storyline you follow moves.", ""]
    for spec in COMMANDS:
        if spec.admin and not admin:
            continue
        head = f"/{spec.name} {spec.args}".rstrip()
        lines.append(f"{head} — {spec.description}\n   e.g. {spec.example}")
    lines.append("")
    lines.append("In groups, everyone can read; only the group's administrators can change "
                 "what it follows and its settings.")
    if admin:
        lines.append("To import feeds, send an OPML file (.opml) here as a document.")
    else:
        lines.append("Feeds are managed by the bot's admins (/feeds, /addfeed, /removefeed).")
    return "\n".join(lines)
