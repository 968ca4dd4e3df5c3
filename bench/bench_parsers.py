"""Feed parsers compared: speed on the farm's feeds, agreement on the feedparser corpus.

Contenders:

* **feedparser** - ``parse_feed(..., use_fast_path=False)``: feedparser for every
  document, then Storywatch's normalisation (the reference);
* **storywatch** - ``parse_feed`` as shipped: plain well-formed RSS 2.0 / Atom through
  lxml (``bot.parsing.fastpath``), everything else through feedparser;
* **storywatch fast path, parse only** - ``fastpath.entries``: the lxml tree and the
  fields read from it, before plain text, links and keys are made of them;
* **fastfeedparser** - ``fastfeedparser.parse`` alone (an lxml-based parser on PyPI),
  measured as a candidate fast path; its entries are compared with feedparser's.

Speed: CPU seconds to parse the farm's 100 feed templates (10-200 KB, 50 items,
RSS and Atom; :mod:`bench.feedfarm`), scaled to 1,000 feeds, median of ``--runs``.

Agreement, over every ``*.xml`` of ``../shared/corpora/feedparser``: for storywatch,
the documents the fast path answered, and whether their items (keys, titles, links,
dates, summaries, sources) equal feedparser's; for fastfeedparser, the documents where
it raised, and where its entries disagree with feedparser's on the number of entries,
titles (as plain text), links (canonical) or dates (UTC, to the second).

Run: .venv/bin/python bench/bench_parsers.py     (about a minute)
"""

from __future__ import annotations

import argparse
import calendar
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, machine, table
from bench.feedfarm import MARK, FarmSpec, build_template

CORPUS = REPO.parent / "shared" / "corpora" / "feedparser"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "http://example.test/feed"


def speed(runs: int) -> list[list[object]]:
    import fastfeedparser  # type: ignore[import-untyped,unused-ignore]

    from bot.parsing import fastpath
    from bot.parsing.feeds import parse_feed

    spec = FarmSpec()
    bodies = [build_template(spec, k).replace(MARK, b"7") for k in range(spec.templates)]
    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    contenders: dict[str, Callable[[bytes], object]] = {
        "feedparser": lambda b: parse_feed(b, headers, BASE, use_fast_path=False),
        "storywatch": lambda b: parse_feed(b, headers, BASE),
        "storywatch fast path, parse only (no normalisation)":
            lambda b: fastpath.entries(b, headers["content-type"]),
        "fastfeedparser (parse only)": fastfeedparser.parse,
    }
    rows: list[list[object]] = []
    for name, fn in contenders.items():
        times = []
        for _ in range(runs):
            t = time.process_time()
            for b in bodies:
                fn(b)
            times.append(time.process_time() - t)
        per_1000 = statistics.median(times) * 1000 / len(bodies)
        # CPU-s per 1,000 feeds is also ms per feed.
        rows.append([name, per_1000, f"{per_1000:.2f} ms"])
    return rows


def _when(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp())
    return calendar.timegm((*value[:6], 0, 0, 0))  # struct_time in UTC


def _link(value: Any) -> str | None:
    from bot.parsing.normalize import canonical_url

    try:
        return canonical_url(urljoin(BASE, value or ""))
    except ValueError:
        return "(invalid)"


def agreement() -> tuple[list[list[object]], list[str]]:
    import fastfeedparser

    from bot.errors import ParseError
    from bot.parsing import fastpath
    from bot.parsing.feeds import (
        ParsedFeed,
        _feedparser,
        _replace_doctype_without_entities,
        parse_feed,
    )
    from bot.parsing.normalize import plain_text

    docs = sorted(CORPUS.rglob("*.xml"))
    fast_answered = fast_same = 0
    counts = {"raised": 0, "entries": 0, "titles": 0, "links": 0, "dates": 0, "lost": 0}
    notes: list[str] = []
    feedparser = _feedparser()
    for path in docs:
        body = path.read_bytes()
        safe = _replace_doctype_without_entities(body)[1]
        if fastpath.entries(safe, "application/xml") is not None:
            fast_answered += 1
            try:
                a: ParsedFeed | str = parse_feed(body, {}, BASE, now=NOW)
            except ParseError as exc:
                a = str(exc)
            try:
                b: ParsedFeed | str = parse_feed(body, {}, BASE, now=NOW, use_fast_path=False)
            except ParseError as exc:
                b = str(exc)
            if a == b:
                fast_same += 1
            else:
                notes.append(f"storywatch differs: {path.relative_to(CORPUS)}")
        ref = feedparser.parse(safe, sanitize_html=False, resolve_relative_uris=False).entries
        try:
            got = fastfeedparser.parse(safe).entries
        except Exception:  # any failure is what is counted
            counts["raised"] += 1
            counts["lost"] += len(ref)
            continue
        if len(got) != len(ref):
            counts["entries"] += 1
            counts["lost"] += max(0, len(ref) - len(got))
            continue
        for e, r in zip(got, ref, strict=True):
            if plain_text(e.get("title") or "") != plain_text(r.get("title") or ""):
                counts["titles"] += 1
                break
        for e, r in zip(got, ref, strict=True):
            if _link(e.get("link")) != _link(r.get("link")):
                counts["links"] += 1
                break
        for e, r in zip(got, ref, strict=True):
            theirs = r.get("published_parsed") or r.get("updated_parsed")
            mine = e.get("published") or e.get("updated")
            try:
                ours = int(datetime.fromisoformat(mine).timestamp()) if mine else None
            except (TypeError, ValueError):
                ours = -1
            if ours != _when(theirs):
                counts["dates"] += 1
                break
    rows: list[list[object]] = [
        ["storywatch (lxml fast path, feedparser fallback)", len(docs),
         f"fast path {fast_answered}, feedparser {len(docs) - fast_answered}",
         f"{fast_same} of {fast_answered} identical items (keys, titles, links, dates, "
         f"summaries, sources); the rest read by feedparser itself"],
        ["fastfeedparser alone", len(docs), f"raised on {counts['raised']}",
         f"entry count differs on {counts['entries']}, titles on {counts['titles']}, "
         f"links on {counts['links']}, dates on {counts['dates']} documents; "
         f"{counts['lost']} of feedparser's entries missing"],
    ]
    return rows, notes


def main() -> None:
    p = argparse.ArgumentParser(description="feed parsers: speed and corpus agreement")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(machine())
    print(f"speed: CPU s per 1,000 farm feeds (median of {args.runs} runs over the 100 "
          "templates)")
    print(table(["parser", "CPU s per 1,000 feeds", "per feed"], speed(args.runs)))
    print()
    rows, notes = agreement()
    print(f"agreement with feedparser on {CORPUS}")
    print(table(["parser", "documents", "read by", "agreement"], rows))
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
