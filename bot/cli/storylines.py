"""``storywatch storylines add|list|remove``: manage storylines from the shell."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from bot.cli.common import fail, settings_and_db
from bot.errors import ConfigError
from bot.models import Storyline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("storylines", help="add, list or remove tracked storylines")
    sub = p.add_subparsers(metavar="ACTION", required=True)
    add = sub.add_parser(
        "add", help="track a storyline, optionally seeded from a document (shared by all chats)"
    )
    add.add_argument("title", metavar="TITLE")
    add.add_argument("--seed", type=Path, metavar="FILE", help="a text file that seeds it")
    add.set_defaults(func=_add)
    lst = sub.add_parser("list", help="list storylines with their subscriber counts")
    lst.set_defaults(func=_list)
    rm = sub.add_parser(
        "remove", help="remove a storyline for every chat that follows it (like /delete)"
    )
    rm.add_argument("storyline_id", metavar="ID", type=int)
    rm.set_defaults(func=_remove)


def _add(args: argparse.Namespace) -> int:
    title = " ".join(args.title.split())
    if not title:
        return fail("not added: the title is empty")
    seed_text = ""
    if args.seed is not None:
        try:
            seed_text = args.seed.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read seed file {args.seed}: {exc}") from None
    _, db = settings_and_db()
    try:
        storyline = db.add_storyline(
            Storyline(id=0, title=title, seed_text=seed_text, shared=True),
            now=datetime.now(UTC),
        )
    finally:
        db.close()
    print(f"added storyline {storyline.id}: {storyline.title}")
    return 0


def _list(args: argparse.Namespace) -> int:
    _, db = settings_and_db()
    try:
        rows = db.storylines_for_chat(None)
    finally:
        db.close()
    if not rows:
        print('no storylines; add one with: storywatch storylines add "TITLE"')
        return 0
    for row in rows:
        s = row.storyline
        tag = "shared" if s.shared else f"chat {row.created_by}"
        print(f"{s.id:>4}  {s.title}  [{tag}, {row.subscribers} subscribers]")
    return 0


def _remove(args: argparse.Namespace) -> int:
    _, db = settings_and_db()
    try:
        storyline = db.get_storyline(args.storyline_id)
        followers = db.followers(args.storyline_id) if storyline is not None else []
        removed = storyline is not None and db.deactivate_storyline(args.storyline_id)
    finally:
        db.close()
    if storyline is None or not removed:
        return fail(f"no storyline with id {args.storyline_id}; see: storywatch storylines list")
    print(f"removed storyline {storyline.id}: {storyline.title} "
          f"({len(followers)} chat(s) followed it; their pending alerts are dropped)")
    return 0
