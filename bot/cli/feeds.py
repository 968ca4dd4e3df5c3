"""``storywatch feeds add|list|remove``: manage the watched feeds from the shell."""

from __future__ import annotations

import argparse
import asyncio

from bot.bootstrap import normalise_feed_url, running_poller
from bot.cli.common import fail, settings_and_db
from bot.errors import FetchError, ParseError
from bot.pipeline import ProbeResult
from bot.settings import Settings
from bot.storage.repository import Database, DuplicateError


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


async def _probe_and_add(settings: Settings, db: Database, url: str) -> ProbeResult:
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
