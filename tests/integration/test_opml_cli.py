"""`storywatch feeds import FILE.opml` and `storywatch feeds export [FILE]` as a user runs
them, against real feed servers on 127.0.0.1 and a real SQLite file.

With STORYWATCH_TRANSCRIPTS=DIR, each test writes the commands it ran and what they
printed to DIR/<test>.txt.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.parsing.opml import MAX_OPML_BYTES, MAX_OUTLINES, OpmlFeed, read_opml
from tests.support.feed_server import ATOM_TYPE, FeedServer, Route, atom_document, rss_document
from tests.unit.test_opml import BILLION_LAUGHS, EXTERNAL_ENTITY

ROOT = Path(__file__).resolve().parents[2]


def _items(prefix: str) -> list[dict[str, str]]:
    return [{"guid": f"{prefix}-1", "title": "Wang Yi to visit Russia", "link": "https://w.test/1",
             "description": "talks", "pubDate": "Mon, 18 Sep 2023 09:00:00 GMT"}]


@dataclass
class Cli:
    """The command line in one data directory, logging what it ran for the transcript."""

    tmp: Path
    vars: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=cwd or self.tmp, env=self.vars,
            capture_output=True, text=True, timeout=120, check=False,
        )
        shown = " ".join(a if "/" not in a else Path(a).name for a in args)
        self.log.append(f"$ storywatch {shown}\n{result.stdout}{result.stderr}"
                        f"[exit {result.returncode}]\n")
        return result

    def feeds_in_db(self) -> list[tuple[str, str | None]]:
        conn = sqlite3.connect(self.tmp / "data" / "storywatch.db")
        try:
            return conn.execute("SELECT url, title FROM feeds ORDER BY id").fetchall()
        finally:
            conn.close()


def _cli(tmp: Path, name: str, *, private: bool = True, per_host: int | None = None) -> Cli:
    home = tmp / name
    (home / "seeds").mkdir(parents=True)
    config = home / "storywatch.toml"
    text = f'seeds_dir = "{home / "seeds"}"\n'
    if per_host is not None:
        text += f"[fetch]\nper_host = {per_host}\n"
    config.write_text(text, encoding="utf-8")
    return Cli(home, {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "STORYWATCH_CONFIG": str(config),
        "STORYWATCH_DATA_DIR": str(home / "data"),
        "STORYWATCH_POLL_INTERVAL": "1",
        "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true" if private else "false",
    })


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        s.set_route("/wire.rss", Route(body=rss_document("Wire (its own title)", _items("w"))))
        s.set_route("/desk.atom", Route(body=atom_document("Atom News", [
            {"id": "urn:a:1", "title": "Putin expected in Beijing", "link": "https://a.test/1",
             "summary": "Belt and Road Forum", "updated": "2023-09-18T08:00:00Z"}]),
            content_type=ATOM_TYPE))
        s.set_route("/gone.rss", Route(body=b"not here", status=404, content_type="text/plain"))
        s.set_route("/page.html", Route(body=b"<html><body><p>Hello</p></body></html>",
                                        content_type="text/html"))
        yield s


@pytest.fixture
def transcript(request: pytest.FixtureRequest) -> Iterator[list[Cli]]:
    clis: list[Cli] = []
    yield clis
    where = os.environ.get("STORYWATCH_TRANSCRIPTS")
    if where:
        out = Path(where)
        out.mkdir(parents=True, exist_ok=True)
        text = "\n".join(f"# data directory {c.tmp.name}\n" + "\n".join(c.log) for c in clis)
        (out / f"{request.node.name}.txt").write_text(text, encoding="utf-8")


def _list(server: FeedServer) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Reading list</title></head>
  <body>
    <outline text="News">
      <outline text="wire" title="My wire" type="rss" xmlUrl="{server.url('/wire.rss')}"/>
      <outline text="Desks">
        <outline text="Atom desk" type="rss" xmlUrl="{server.url('/desk.atom')}"/>
      </outline>
    </outline>
    <outline text="Gone" type="rss" xmlUrl="{server.url('/gone.rss')}"/>
    <outline text="A page" type="rss" xmlUrl="{server.url('/page.html')}"/>
    <outline text="Mail port" type="rss" xmlUrl="http://127.0.0.1:25/rss"/>
    <outline text="FTP" type="rss" xmlUrl="ftp://files.example/rss"/>
    <outline text="wire again" type="rss" xmlUrl="{server.url('/wire.rss')}"/>
  </body>
</opml>
"""


def test_import_then_export_round_trips_into_a_fresh_bot(
    tmp_path: Path, server: FeedServer, transcript: list[Cli]
) -> None:
    first = _cli(tmp_path, "first")
    transcript.append(first)
    listing = first.tmp / "reading-list.opml"
    listing.write_text(_list(server), encoding="utf-8")

    result = first.run("feeds", "import", str(listing))
    # Some feeds failed: the summary says which and why, and the exit code says so.
    assert result.returncode == 1
    assert result.stdout.startswith(
        "Imported the feed list: 2 added, 0 already watched, 4 failed "
        "(1 listed twice in the file, taken once).")
    out = result.stdout
    assert f"✗ {server.url('/gone.rss')} — the server answered HTTP 404" in out
    assert f"✗ {server.url('/page.html')} — not a feed (RSS, Atom or RDF)" in out
    assert "✗ http://127.0.0.1:25/rss — refused: port 25 is not used for web feeds" in out
    assert "✗ ftp://files.example/rss — not an http(s) address" in out
    assert f"My wire — {server.url('/wire.rss')}" in out
    assert f"Atom desk — {server.url('/desk.atom')}" in out
    assert "4 of the file's feeds were not added" in result.stderr
    # Checked concurrently, so stored in the order the checks ended.
    expected = sorted([(server.url("/wire.rss"), "My wire"),
                       (server.url("/desk.atom"), "Atom desk")])
    assert sorted(first.feeds_in_db()) == expected

    # A poll reads each feed's own title; the names the list gave are kept.
    assert first.run("poll", "--once").returncode == 0
    assert sorted(first.feeds_in_db()) == expected

    exported = first.tmp / "exported.opml"
    result = first.run("feeds", "export", str(exported))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"exported 2 feed(s) to {exported}\n"
    assert sorted(read_opml(exported.read_bytes()), key=lambda f: f.url) == [
        OpmlFeed(url, title) for url, title in expected]

    # Importing the export again adds nothing.
    again = first.run("feeds", "import", str(exported))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Imported the feed list: 0 added, 2 already watched, 0 failed.")

    # Into a fresh data directory: the same feeds, the same titles, the same export.
    second = _cli(tmp_path, "second")
    transcript.append(second)
    result = second.run("feeds", "import", str(exported))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Imported the feed list: 2 added, 0 already watched, 0 failed.")
    to_stdout = second.run("feeds", "export")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert sorted(second.feeds_in_db()) == expected
    assert (sorted(read_opml(to_stdout.stdout.encode()), key=lambda f: f.url)
            == sorted(read_opml(exported.read_bytes()), key=lambda f: f.url))
    assert to_stdout.stdout.startswith(
        "<?xml version='1.0' encoding='utf-8'?>\n<opml version=\"2.0\">")


def test_bad_files_are_refused_and_change_nothing(
    tmp_path: Path, server: FeedServer, transcript: list[Cli]
) -> None:
    cli = _cli(tmp_path, "bad")
    transcript.append(cli)
    good = _list(server)
    rows = "".join(f'<outline text="f{i}" xmlUrl="{server.url(f"/f{i}")}"/>'
                   for i in range(MAX_OUTLINES + 1))
    files = {
        "billion-laughs.opml": (BILLION_LAUGHS, "DOCTYPE declaration"),
        "xxe.opml": (EXTERNAL_ENTITY, "DOCTYPE declaration"),
        "huge.opml": (good.encode() + b" " * MAX_OPML_BYTES, "the limit is 1,048,576 (1 MB)"),
        "many.opml": (f"<opml><body>{rows}</body></opml>".encode(), "the limit is 2,000"),
        "a-feed.opml": (rss_document("Wire", _items("x")), "root element is <rss>, not <opml>"),
        "notes.opml": (b"just some notes\n", "not well-formed XML"),
    }
    for name, (content, why) in files.items():
        path = cli.tmp / name
        path.write_bytes(content)
        result = cli.run("feeds", "import", str(path))
        assert result.returncode == 1, name
        assert why in result.stderr and "nothing was imported" in result.stderr, result.stderr
    missing = cli.run("feeds", "import", str(cli.tmp / "no-such.opml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert server.requests == []  # nothing fetched
    assert not (cli.tmp / "data" / "storywatch.db").exists() or cli.feeds_in_db() == []


def test_each_feed_goes_through_the_ssrf_guard(
    tmp_path: Path, server: FeedServer, transcript: list[Cli]
) -> None:
    cli = _cli(tmp_path, "guarded", private=False)
    transcript.append(cli)
    listing = cli.tmp / "list.opml"
    listing.write_text(_list(server), encoding="utf-8")
    result = cli.run("feeds", "import", str(listing))
    assert result.returncode == 1
    assert "0 added" in result.stdout
    assert (f"✗ {server.url('/wire.rss')} — refused: 127.0.0.1 is a loopback address"
            in result.stdout)
    assert server.requests == []  # refused before any connection
    assert cli.feeds_in_db() == []


def test_feeds_are_checked_concurrently_within_the_per_host_limit(
    tmp_path: Path, server: FeedServer, transcript: list[Cli]
) -> None:
    cli = _cli(tmp_path, "concurrent", per_host=3)
    transcript.append(cli)
    paths = [f"/slow{i}.rss" for i in range(8)]
    for path in paths:
        # Slow enough that the checks overlap; the count of overlapping requests is
        # what is asserted, not any duration.
        server.set_route(path, Route(body=rss_document(path, _items(path)), delay=0.4))
    rows = "".join(f'<outline text="{p}" xmlUrl="{server.url(p)}"/>' for p in paths)
    listing = cli.tmp / "slow.opml"
    listing.write_text(f"<opml version='2.0'><body>{rows}</body></opml>", encoding="utf-8")
    server.clear_requests()
    result = cli.run("feeds", "import", str(listing))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 added" in result.stdout
    assert server.peak_concurrency == 3  # several at once, never past [fetch] per_host
