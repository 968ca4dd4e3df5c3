"""``storywatch feeds add|list|remove|import|export``: manage the watched feeds from the
shell; ``import`` and ``export`` read and write OPML feed lists (``bot.parsing.opml``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bot.bootstrap import normalise_feed_url, running_poller
from bot.cli.common import fail, settings_and_db
from bot.errors import FetchError, OpmlError, ParseError
from bot.feed_import import ImportReport, import_feeds
from bot.parsing.opml import MAX_OPML_BYTES, OpmlFeed, read_opml, write_opml
from bot.pipeline import ProbeResult
from bot.settings import Settings
from bot.storage.ports import CliStore
from bot.storage.repository import DuplicateError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("feeds", help="add, list or remove watched feeds")
    sub = p.add_subparsers(metavar="ACTION", required=True)
    add = sub.add_parser("add", help="fetch URL once to check it is a feed, then watch it")
    add.add_argument("url", metavar="URL")
    add.set_defaults(func=_add)
    lst = sub.add_parser("list", help="list feeds with their state")
    lst.set_defaults(func=_list)
    rm = sub.add_parser("remove", help="stop watching a feed (its items are deleted)")
    rm.add_argument("feed_id", metavar="ID", type=int)
    rm.set_defaults(func=_remove)
    imp = sub.add_parser(
        "import", help="add the feeds an OPML file lists (each fetched once to check it)"
    )
    imp.add_argument("file", metavar="FILE.opml", type=Path)
    imp.set_defaults(func=_import)
    exp = sub.add_parser(
        "export", help="write the watched feeds as OPML 2.0 (to stdout without FILE)"
    )
    exp.add_argument("file", metavar="FILE", type=Path, nargs="?")
    exp.set_defaults(func=_export)


async def _probe_and_add(settings: Settings, db: CliStore, url: str) -> ProbeResult:
    async with running_poller(settings, db) as poller:
        _, probe = await poller.add_feed(url)
        return probe


def _add(args: argparse.Namespace) -> int:
    settings, db = settings_and_db()
    try:
        url = normalise_feed_url(args.url)
        probe = asyncio.run(_probe_and_add(settings, db, url))
        feed = db.find_feed(url)
    except DuplicateError as exc:
        return fail(f"not added: {exc}")
    except (FetchError, ParseError) as exc:
        return fail(f"not added: {url}: {exc}")
    finally:
        db.close()
    assert feed is not None
    print(f"added feed {feed.id}: {probe.title or url} ({probe.item_count} items now; "
          "these are stored on the first poll and not alerted)")
    return 0


def _list(args: argparse.Namespace) -> int:
    _, db = settings_and_db()
    try:
        feeds = db.list_feeds()
    finally:
        db.close()
    if not feeds:
        print("no feeds; add one with: storywatch feeds add URL")
        return 0
    for f in feeds:
        s = f.state
        if s.consecutive_errors:
            status = f"failing x{s.consecutive_errors}: {s.last_error}"
        elif s.last_ok is not None:
            status = f"ok, last {s.last_ok:%Y-%m-%d %H:%M}Z"
        else:
            status = "not polled yet"
        print(f"{f.id:>4}  {f.title or '-'}  {f.url}  [{status}]")
    return 0


def _remove(args: argparse.Namespace) -> int:
    _, db = settings_and_db()
    try:
        removed = db.remove_feed(args.feed_id)
    finally:
        db.close()
    if not removed:
        return fail(f"no feed with id {args.feed_id}; see: storywatch feeds list")
    print(f"removed feed {args.feed_id}")
    return 0


def read_opml_file(path: Path) -> list[OpmlFeed]:
    """The feeds of the OPML file at ``path``; OpmlError (or OSError) when unusable.
    The size is checked before the file is read."""
    with path.open("rb") as f:
        data = f.read(MAX_OPML_BYTES + 1)  # one byte past the cap is enough to refuse
    return read_opml(data)


async def _import_all(
    settings: Settings, db: CliStore, feeds: list[OpmlFeed]
) -> ImportReport:
    watched = {f.url for f in await asyncio.to_thread(db.list_feeds)}
    async with running_poller(settings, db) as poller:
        return await import_feeds(poller, feeds, watched)


def _import(args: argparse.Namespace) -> int:
    try:
        feeds = read_opml_file(args.file)
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror or exc}")
    except OpmlError as exc:
        return fail(f"{args.file}: {str(exc).rstrip('.')}; nothing was imported")
    settings, db = settings_and_db()
    try:
        report = asyncio.run(_import_all(settings, db, feeds))
    finally:
        db.close()
    print(report.describe())
    if report.failed:
        return fail(f"{len(report.failed)} of the file's feeds were not added (see above)")
    return 0


def _export(args: argparse.Namespace) -> int:
    _, db = settings_and_db()  # the feeds `feeds list` shows, the config's included
    try:
        feeds = db.list_feeds()
    finally:
        db.close()
    document = write_opml(
        [OpmlFeed(f.url, f.title) for f in feeds], title="Storywatch feeds",
        created=datetime.now(UTC),
    )
    if args.file is None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
        return 0
    try:
        _write_atomically(args.file, document)
    except OSError as exc:
        return fail(f"cannot write {args.file}: {exc.strerror or exc}")
    print(f"exported {len(feeds)} feed(s) to {args.file}")
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    # A crash or a full disk midway leaves the old file, never half a list.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
