"""Importing a list of feeds (an OPML file's): check each one, add the good ones, and
say what happened to every one of them.

Shared by ``storywatch feeds import`` and an admin's upload in Telegram. Each new
address goes through the poller's ``add_feed`` (normalised, fetched once through the
guarded fetcher, parsed, then stored), all at once: the fetcher's own limits (fetches
at once, overall and per host) keep a long list from hammering anyone. A feed that
fails is reported with its reason and changes nothing; one feed's failure never
stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.bootstrap import normalise_feed_url
from bot.errors import (
    BlockedAddressError,
    ConfigError,
    FetchError,
    HTTPStatusError,
    ParseError,
    StorageError,
)
from bot.models import Feed
from bot.parsing.opml import OpmlFeed
from bot.pipeline import ProbeResult
from bot.storage.repository import DuplicateError

log = logging.getLogger(__name__)


class TitledFeedAdder(Protocol):
    """The part of the poller an import uses (``bot.pipeline.Poller.add_feed``)."""

    async def add_feed(
        self, url: str, *, added_by: int | None = None, title: str | None = None
    ) -> tuple[Feed, ProbeResult]: ...


@dataclass(frozen=True, slots=True)
class Added:
    feed_id: int
    url: str
    title: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did, feed by feed, in the file's order."""

    added: tuple[Added, ...] = ()
    already: tuple[str, ...] = ()
    failed: tuple[Failed, ...] = ()
    repeated: int = 0  # entries that repeat an address listed earlier in the same file

    def headline(self) -> str:
        line = (
            f"{len(self.added)} added, {len(self.already)} already watched, "
            f"{len(self.failed)} failed"
        )
        if self.repeated:
            line += f" ({self.repeated} listed twice in the file, taken once)"
        return line

    def describe(self, *, per_section: int | None = None) -> str:
        """The summary: the counts, then the failures with their reasons (what needs
        acting on), then what was added and what was already watched. ``per_section``
        caps the lines of each list (a chat message has room for a few dozen)."""

        def section(head: str, lines: list[str]) -> list[str]:
            if not lines:
                return []
            shown = lines if per_section is None else lines[:per_section]
            more = len(lines) - len(shown)
            return ["", f"{head}:", *shown, *([f"… and {more} more"] if more else [])]

        return "\n".join([
            f"Imported the feed list: {self.headline()}.",
            *section("Failed", [f"✗ {f.url} — {f.reason}" for f in self.failed]),
            *section("Added", [f"+ #{a.feed_id} {a.title or '(no title)'} — {a.url}"
                               for a in self.added]),
            *section("Already watched", [f"= {u}" for u in self.already]),
        ])


@dataclass
class _Plan:
    """The file's feeds sorted before anything is fetched."""

    new: list[tuple[str, str | None]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    repeated: int = 0


def plan(feeds: Sequence[OpmlFeed], watched: set[str]) -> _Plan:
    """Normalise every address and sort the file's feeds into new, already watched
    (``watched`` holds the stored addresses) and unusable, dropping repeats."""
    out = _Plan()
    seen: set[str] = set()
    for entry in feeds:
        try:
            url = normalise_feed_url(entry.url)
        except ConfigError:
            out.failed.append(Failed(entry.url[:200] or "(empty address)",
                                     "not an http(s) address"))
            continue
        if url in seen:
            out.repeated += 1
            continue
        seen.add(url)
        if url in watched:
            out.already.append(url)
        else:
            out.new.append((url, entry.title))
    return out


def reason(exc: Exception) -> str:
    """Why a feed was not added, in words for whoever imported it (as /addfeed says it)."""
    if isinstance(exc, BlockedAddressError):
        return str(exc)
    if isinstance(exc, HTTPStatusError):
        return f"the server answered HTTP {exc.status}"
    if isinstance(exc, FetchError):
        return f"could not fetch it: {exc}"
    if isinstance(exc, ParseError):
        return f"not a feed (RSS, Atom or RDF): {exc}"
    return f"internal error ({type(exc).__name__})"


async def import_feeds(
    adder: TitledFeedAdder,
    feeds: Sequence[OpmlFeed],
    watched: set[str],
    *,
    added_by: int | None = None,
) -> ImportReport:
    """Check and add every new feed of ``feeds`` concurrently; see the module doc.

    A storage fault is raised once every check has ended (the feeds added before it
    stay added, each in its own transaction); every other failure is on the report.
    """
    todo = plan(feeds, watched)

    async def one(url: str, title: str | None) -> Added | Failed | str:
        try:
            feed, probe = await adder.add_feed(url, added_by=added_by, title=title)
        except DuplicateError:
            return url  # added meanwhile (another import, /addfeed): watched all the same
        except (FetchError, ParseError) as exc:
            return Failed(url, reason(exc))
        except StorageError:
            raise
        except Exception as exc:  # one feed's bug must not stop the import
            log.exception("unexpected error importing a feed")
            return Failed(url, reason(exc))
        return Added(feed.id, url, feed.title or probe.title)

    results = await asyncio.gather(*(one(u, t) for u, t in todo.new), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return ImportReport(
        added=tuple(r for r in results if isinstance(r, Added)),
        already=(*todo.already, *(r for r in results if isinstance(r, str))),
        failed=(*todo.failed, *(r for r in results if isinstance(r, Failed))),
        repeated=todo.repeated,
    )
