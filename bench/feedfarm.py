"""A local farm of many news feeds on 127.0.0.1, served from a separate process.

The benchmarks poll 1,000-5,000 feeds. A threaded ``http.server`` in the measured
process would both be the bottleneck on 2 cores and add its CPU to the bot's, so the
farm is a small asyncio HTTP/1.1 server (keep-alive, conditional GET) in its own
process started with ``multiprocessing`` (spawn). Only 127.0.0.1 is bound.

Feeds (``i`` from 0 to ``feeds - 1``), each with ``items`` entries:

* ``/v/<i>.xml`` - with validators: ``ETag`` and ``Last-Modified``, answering 304 to a
  matching ``If-None-Match`` / ``If-Modified-Since``;
* ``/n/<i>.xml`` - the same body with no validators: always 200 (the bot must notice
  the unchanged body itself, by hash);
* every ``slow_every``-th feed waits ``slow_delay`` seconds before answering;
* ``/stats`` - JSON counts of 200 and 304 answers and bytes sent.

Bodies range from ``min_kb`` to ``max_kb`` (spread evenly over the feeds); one in four
is Atom, the rest RSS 2.0; descriptions carry escaped HTML like real feeds. They are
built once from ``templates`` documents in which each feed's number is substituted, so
5,000 feeds do not need 500 MB of memory in the farm.

    with FeedFarm(FarmSpec(feeds=1000)) as farm:
        urls = farm.urls("v")

Standalone: ``.venv/bin/python bench/feedfarm.py --feeds 1000`` serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from multiprocessing.connection import Connection
from types import TracebackType
from xml.sax.saxutils import escape

MARK = b"\x00F"  # replaced by the feed number in every template
LAST_MODIFIED = "Mon, 06 Jan 2025 08:00:00 GMT"
WORDS = str.split(
    "government minister talks deal market shares election vote court ruling storm flood "
    "summit leaders trade tariffs energy prices strike union police protest city council "
    "report study health hospital vaccine school budget tax bank rates inflation jobs "
    "company profit loss merger technology launch climate emissions border security army "
    "ceasefire peace agreement visit capital officials said on tuesday after week record"
)
NAMES = str.split(
    "Putin Xi Biden Macron Scholz Modi Lula Erdogan Zelensky Sunak Meloni Kishida Albanese "
    "Moscow Beijing Paris Berlin Delhi Brasilia Ankara Kyiv London Rome Tokyo Canberra"
)


@dataclass(frozen=True, slots=True)
class FarmSpec:
    """What the farm serves; deterministic for a given ``seed``."""

    feeds: int = 1000
    items: int = 50
    min_kb: int = 10
    max_kb: int = 200
    slow_every: int = 100
    slow_delay: float = 1.0
    templates: int = 100
    seed: int = 1234

    def size_kb(self, template: int) -> float:
        span = self.max_kb - self.min_kb
        return self.min_kb + span * (template / max(1, self.templates - 1))

    def is_slow(self, feed: int) -> bool:
        return self.slow_every > 0 and feed % self.slow_every == self.slow_every - 1


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    words[rng.randrange(n)] = rng.choice(NAMES)
    return " ".join(words).capitalize()


def build_template(spec: FarmSpec, index: int) -> bytes:
    """One feed document of about ``spec.size_kb(index)`` KB, with MARK for the feed number."""
    rng = random.Random(spec.seed * 1000 + index)
    atom = index % 4 == 3
    target = int(spec.size_kb(index) * 1024)
    per_item = max(200, target // spec.items)
    start = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
    mark = MARK.decode()
    parts: list[str] = []
    if atom:
        parts.append(
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Farm feed {mark}</title><id>urn:farm:{mark}</id>"
            f'<link href="https://farm.example.test/{mark}/"/>'
            f"<updated>{start.isoformat()}</updated>"
        )
    else:
        parts.append(
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Farm feed {mark}</title><link>https://farm.example.test/{mark}/</link>"
            "<description>benchmark feed</description>"
        )
    for j in range(spec.items):
        when = start - timedelta(minutes=17 * j)
        title = escape(f"{_sentence(rng, rng.randint(7, 12))} ({mark}-{j})")
        link = f"https://farm.example.test/{mark}/story/{j}"
        html: list[str] = []
        size = 0
        while size < per_item - 330:
            para = f"<p>{_sentence(rng, rng.randint(12, 30))}.</p>"
            html.append(para)
            size += len(para) + 20
        body = escape("".join(html))
        if atom:
            parts.append(
                f"<entry><title>{title}</title><id>urn:farm:{mark}:{j}</id>"
                f'<link href="{link}"/><updated>{when.isoformat()}</updated>'
                f'<summary type="html">{body}</summary></entry>'
            )
        else:
            parts.append(
                f"<item><title>{title}</title><link>{link}</link>"
                f'<guid isPermaLink="false">{mark}-{j}</guid>'
                f"<pubDate>{format_datetime(when, usegmt=True)}</pubDate>"
                f"<description>{body}</description></item>"
            )
    parts.append("</feed>\n" if atom else "</channel></rss>\n")
    return "".join(parts).encode("utf-8")


_PATH = re.compile(r"^/([vn])/(\d+)\.xml$")


class _Farm:
    def __init__(self, spec: FarmSpec) -> None:
        self.spec = spec
        self.templates = [build_template(spec, k) for k in range(spec.templates)]
        self.stats = {"200": 0, "304": 0, "404": 0, "bytes": 0, "connections": 0}

    def body(self, feed: int) -> bytes:
        # Spread sizes over feeds without tying size to the slow feeds' numbers.
        template = (feed * 37) % self.spec.templates
        return self.templates[template].replace(MARK, str(feed).encode())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                path = parts[1] if len(parts) > 1 else "/"
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                keep = headers.get("connection", "").lower() != "close"
                await self.answer(writer, path, headers, keep)
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def answer(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str], keep: bool
    ) -> None:
        conn = b"keep-alive" if keep else b"close"
        if path == "/stats":
            data = json.dumps(self.stats).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\nConnection: %s\r\n\r\n" % (len(data), conn)
                + data
            )
            await writer.drain()
            return
        m = _PATH.match(path.split("?")[0])
        feed = int(m.group(2)) if m else -1
        if m is None or feed >= self.spec.feeds:
            self.stats["404"] += 1
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n" % conn
            )
            await writer.drain()
            return
        if self.spec.is_slow(feed):
            await asyncio.sleep(self.spec.slow_delay)
        validators = m.group(1) == "v"
        etag = f'"farm-{feed}-1"'
        extra = b""
        if validators:
            extra = f"ETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\n".encode()
            if headers.get("if-none-match") == etag or (
                "if-none-match" not in headers
                and headers.get("if-modified-since") == LAST_MODIFIED
            ):
                self.stats["304"] += 1
                writer.write(
                    b"HTTP/1.1 304 Not Modified\r\n" + extra
                    + b"Content-Length: 0\r\nConnection: %s\r\n\r\n" % conn
                )
                await writer.drain()
                return
        data = self.body(feed)
        ctype = b"application/atom+xml" if data[:200].find(b"<feed") > 0 else b"application/rss+xml"
        self.stats["200"] += 1
        self.stats["bytes"] += len(data)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s; charset=utf-8\r\n" % ctype + extra
            + b"Content-Length: %d\r\nConnection: %s\r\n\r\n" % (len(data), conn)
        )
        writer.write(data)
        await writer.drain()


async def _serve_async(spec: FarmSpec, conn: Connection | None, port: int) -> None:
    farm = _Farm(spec)
    server = await asyncio.start_server(farm.handle, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if conn is not None:
        conn.send(bound)
    else:
        print(f"feed farm: {spec.feeds} feeds on http://127.0.0.1:{bound}/v/0.xml", flush=True)
    async with server:
        await server.serve_forever()


def _serve(spec: FarmSpec, conn: Connection | None, port: int = 0) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_async(spec, conn, port))


class FeedFarm:
    """Runs the farm in a child process; a context manager."""

    def __init__(self, spec: FarmSpec) -> None:
        self.spec = spec
        self.port = 0
        ctx = multiprocessing.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(spec, child), daemon=True)

    def start(self) -> FeedFarm:
        self._proc.start()
        if not self._parent.poll(120):
            self.stop()
            raise RuntimeError("the feed farm did not start within 120 s")
        self.port = int(self._parent.recv())
        return self

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(10)

    def __enter__(self) -> FeedFarm:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def url(self, feed: int, kind: str = "v") -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{feed}.xml"

    def urls(self, kind: str = "v", count: int | None = None) -> list[str]:
        return [self.url(i, kind) for i in range(self.spec.feeds if count is None else count)]

    def stats(self) -> dict[str, int]:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            data: dict[str, int] = json.loads(r.read())
        return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    _serve(FarmSpec(feeds=args.feeds), None, args.port)


if __name__ == "__main__":
    main()
