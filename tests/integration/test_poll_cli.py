"""`storywatch poll --once` as a user runs it, against real feed servers on 127.0.0.1.

The command runs as a subprocess with its own environment and a real SQLite
file; the tests read the database afterwards to check what was stored.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.feed_server import ATOM_TYPE, FeedServer, Route, atom_document, rss_document

ROOT = Path(__file__).resolve().parents[2]

RDF = b"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
  xmlns:dc="http://purl.org/dc/elements/1.1/">
 <channel rdf:about="https://rdf.example.test/"><title>RDF Wire</title>
  <link>https://rdf.example.test/</link><description>d</description></channel>
 <item rdf:about="https://rdf.example.test/1"><title>Lavrov meets Wang Yi in Moscow</title>
  <link>https://rdf.example.test/1</link><dc:date>2023-09-18T10:00:00Z</dc:date></item>
 <item rdf:about="https://rdf.example.test/2"><title>Markets close higher</title>
  <link>https://rdf.example.test/2</link><dc:date>2023-09-18T11:00:00Z</dc:date></item>
</rdf:RDF>
"""


def rss_items(*titles: str) -> list[dict[str, str]]:
    return [
        {"guid": f"urn:wire:{i}", "title": t, "link": f"https://wire.example.test/{i}?utm_source=x",
         "description": f"<p>{t} &amp; more</p>", "pubDate": "Mon, 18 Sep 2023 09:00:00 GMT"}
        for i, t in enumerate(titles)
    ]


@dataclass
class Env:
    server: FeedServer
    data: Path
    config: Path
    vars: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=ROOT, env=self.vars,
            capture_output=True, text=True, timeout=120, check=False,
        )

    def poll(self) -> subprocess.CompletedProcess[str]:
        # Every feed is due again one poll interval (1 s) after its last check.
        time.sleep(1.1)
        result = self.run("poll", "--once")
        assert result.returncode == 0, result.stderr
        return result

    def query(self, sql: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.data / "storywatch.db")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with FeedServer() as server:
        server.set_route("/rss", Route(body=rss_document("Wire", rss_items(
            "Wang Yi to visit Russia for security talks", "Football results")), etag='"r1"'))
        server.set_route("/atom", Route(body=atom_document("Atom News", [
            {"id": "urn:a:1", "title": "Putin expected in Beijing", "link": "https://a.test/1",
             "summary": "Belt and Road Forum", "updated": "2023-09-18T08:00:00Z"}]),
            content_type=ATOM_TYPE, last_modified="Mon, 18 Sep 2023 08:00:00 GMT"))
        server.set_route("/rdf", Route(body=RDF, content_type="application/rdf+xml"))
        server.redirect("/moved", "/rdf")
        server.set_route("/broken", Route(body=b"oops", status=500))
        config = tmp_path / "storywatch.toml"
        feeds = "".join(f'[[feeds]]\nurl = "{server.url(p)}"\n'
                        for p in ("/rss", "/atom", "/moved", "/broken"))
        config.write_text(f'seeds_dir = "{ROOT / "seeds"}"\n{feeds}', encoding="utf-8")
        data = tmp_path / "data"
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "STORYWATCH_CONFIG": str(config),
            "STORYWATCH_DATA_DIR": str(data),
            "STORYWATCH_POLL_INTERVAL": "1",
            "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        }
        yield Env(server, data, config, variables)


def test_first_poll_stores_every_item_once_and_reports_each_feed(env: Env) -> None:
    result = env.run("poll", "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5, result.stdout
    assert "Wire: 2 new items" in result.stdout
    assert "Atom News: 1 new item," in result.stdout
    assert "RDF Wire: 2 new items" in result.stdout
    assert "error: " in lines[3] and "500" in lines[3]
    assert lines[-1].startswith("total: 4 feeds polled, 1 failed, 5 new items")
    assert env.query("SELECT COUNT(*) FROM items") == [(5,)]
    # Stored text is plain, links canonical, times UTC.
    rows = env.query("SELECT title, summary, link, published FROM items WHERE key LIKE 'g:%' "
                     "ORDER BY title")
    assert ("Football results", "Football results & more",
            "https://wire.example.test/1", "2023-09-18T09:00:00+00:00") in rows


def test_second_poll_adds_nothing_and_sends_conditional_requests(env: Env) -> None:
    env.run("poll", "--once")
    result = env.poll()
    assert "total: 4 feeds polled, 1 failed, 0 new items" in result.stdout
    assert env.query("SELECT COUNT(*) FROM items") == [(5,)]
    rss = env.server.requests_for("/rss")
    assert rss[-1].headers.get("if-none-match") == '"r1"'
    atom = env.server.requests_for("/atom")
    assert atom[-1].headers.get("if-modified-since") == "Mon, 18 Sep 2023 08:00:00 GMT"


def poll_with_wang_yi_arriving(env: Env, first_title: str) -> subprocess.CompletedProcess[str]:
    """A first poll, then the wire adds "Wang Yi arrives in Moscow..." (urn:wire:9),
    with ``first_title`` as its first item's headline, and is polled again."""
    env.run("poll", "--once")
    items = rss_items(first_title, "Football results")
    items.append({"guid": "urn:wire:9", "title": "Wang Yi arrives in Moscow for talks with Lavrov",
                  "link": "https://wire.example.test/9"})
    env.server.set_route("/rss", Route(body=rss_document("Wire", items), etag='"r2"'))
    return env.poll()


def test_changed_title_keeps_identity_and_new_item_matches(env: Env) -> None:
    result = poll_with_wang_yi_arriving(
        env, "Wang Yi to visit Russia for strategic security talks")
    assert "Wire: 1 new item, 1 match," in result.stdout
    titles = [r[0] for r in env.query("SELECT title FROM items WHERE key = 'g:urn:wire:0'")]
    assert titles == ["Wang Yi to visit Russia for strategic security talks"]
    matched = env.query("SELECT i.key, s.slug FROM matches m JOIN items i ON i.id = m.item_id "
                        "JOIN storylines s ON s.id = m.storyline_id")
    assert ("g:urn:wire:9", "wang-yi-russia-2023") in matched
    # Nobody subscribed, so matches are stored but nothing is queued to send.
    assert env.query("SELECT COUNT(*) FROM outbox") == [(0,)]


@pytest.mark.parametrize("semantic", [False, True], ids=["words", "words+meaning"])
def test_meaning_only_adds_to_what_the_title_asks(env: Env, semantic: bool) -> None:
    # The report of the trip matches with words alone and still with meaning; a paraphrase
    # that names neither China nor Beijing gets nothing from meaning alone (the title asks
    # for a place), however close its sense.
    trip = "Putin arrives in Beijing for the Belt and Road Forum"
    paraphrase = "Moscow's strongman arrives for a forum on the new Silk Road"
    if semantic:
        from bot.storylines import semantic as sem

        try:
            sem.MiniLMEmbedder.load()
        except sem.SemanticUnavailable as exc:
            pytest.skip(f"semantic extra not installed: {exc}")
        env.config.write_text(env.config.read_text() + "[matching]\nsemantic = true\n",
                              encoding="utf-8")
    env.run("poll", "--once")
    items = rss_items("Wang Yi to visit Russia for security talks", "Football results")
    items += [{"guid": f"urn:wire:{n}", "title": t, "link": f"https://wire.example.test/{n}",
               "pubDate": "Mon, 16 Oct 2023 12:00:00 GMT"}
              for n, t in ((7, paraphrase), (8, trip))]
    env.server.set_route("/rss", Route(body=rss_document("Wire", items), etag='"r3"'))
    result = env.poll()
    assert "Wire: 2 new items," in result.stdout
    matched = env.query("SELECT i.key, s.slug, m.reason FROM matches m JOIN items i ON "
                        "i.id = m.item_id JOIN storylines s ON s.id = m.storyline_id "
                        "WHERE i.key IN ('g:urn:wire:7', 'g:urn:wire:8')")
    assert [(k, slug) for k, slug, _ in matched] == [
        ("g:urn:wire:8", "putin-china-belt-and-road-2023")
    ]
    assert 'China (as "Beijing")' in str(matched[0][2])


def test_broken_feed_backs_off_and_leaves_others_untouched(env: Env) -> None:
    env.run("poll", "--once")
    env.server.set_route("/atom", Route(body=b"<html><body>Not a feed</body></html>",
                                        content_type="text/html"))
    result = env.poll()
    assert "total: 4 feeds polled, 2 failed, 0 new items" in result.stdout
    errors = dict(env.query("SELECT url, last_error FROM feeds WHERE last_error IS NOT NULL"))
    assert set(errors) == {env.server.url("/atom"), env.server.url("/broken")}
    assert "500" in str(errors[env.server.url("/broken")])
    assert env.query("SELECT COUNT(*) FROM items") == [(5,)]
    # Backoff: the wait before the next check doubles with each consecutive failure.
    rows = env.query("SELECT url, consecutive_errors, "
                     "round((julianday(next_check) - julianday(last_checked)) * 86400) "
                     "FROM feeds ORDER BY id")
    by_url = {url: (errs, wait) for url, errs, wait in rows}
    assert by_url[env.server.url("/broken")] == (2, 2.0)
    assert by_url[env.server.url("/atom")] == (1, 1.0)
    assert by_url[env.server.url("/rss")] == (0, 1.0)


def test_slow_feed_hits_its_deadline_without_holding_back_the_rest(env: Env) -> None:
    env.server.set_route("/slow", Route(body=rss_document("Slow", rss_items("x")), delay=0.5,
                                        chunk_size=16))
    env.config.write_text(env.config.read_text() + f'[[feeds]]\nurl = "{env.server.url("/slow")}"\n'
                          "[fetch]\ndeadline_seconds = 1\n", encoding="utf-8")
    result = env.run("poll", "--once")
    assert result.returncode == 0, result.stderr
    slow = [line for line in result.stdout.splitlines() if "/slow" in line]
    assert len(slow) == 1 and "error" in slow[0], result.stdout
    assert "Wire: 2 new items" in result.stdout


def test_broken_setup_exits_non_zero_with_a_clear_message(env: Env, tmp_path: Path) -> None:
    env.vars["STORYWATCH_CONFIG"] = str(tmp_path / "missing.toml")
    result = env.run("poll", "--once")
    assert result.returncode == 2
    assert "missing.toml does not exist" in result.stderr
    env.config.write_text("[fetch]\nconcurrency = 0\n", encoding="utf-8")
    env.vars["STORYWATCH_CONFIG"] = str(env.config)
    result = env.run("poll", "--once")
    assert result.returncode == 2 and "fetch.concurrency" in result.stderr


@pytest.mark.parametrize("keep_state", [True, False], ids=["state kept", "state deleted"])
def test_what_the_matcher_learned_survives_between_runs(env: Env, keep_state: bool) -> None:
    # One run reads an apposition (Treasury Secretary Janet Yellen); the next run, a new
    # process, knows who "the US Treasury chief" is: from the saved state, or, when that
    # is gone, by reading the stored items again at start.
    added = env.run("storylines", "add", "Yellen visit to China")
    assert added.returncode == 0, added.stderr
    env.server.set_route("/rss", Route(body=rss_document("Wire", [
        {"guid": "urn:wire:1", "title": "Markets steady after jobs data",
         "link": "https://wire.example.test/1", "pubDate": "Mon, 18 Sep 2023 09:00:00 GMT",
         "description": "Treasury Secretary Janet Yellen said the economy was strong."}]),
        etag='"s1"'))
    env.run("poll", "--once")
    from bot.storage.repository import Database

    db = Database.open(env.data / "storywatch.db")
    state = db.load_matcher_state()
    db.close()
    assert state is not None
    assert ["yellen"] in [person for person, _ in state["roles"]]
    if not keep_state:
        conn = sqlite3.connect(env.data / "storywatch.db")
        with conn:
            conn.execute("DELETE FROM meta WHERE key = 'matcher_state'")
        conn.close()
    env.server.set_route("/rss", Route(body=rss_document("Wire", [
        {"guid": "urn:wire:2", "title": "US Treasury chief lands in China",
         "link": "https://wire.example.test/2", "pubDate": "Tue, 19 Sep 2023 09:00:00 GMT",
         "description": "Her first visit since taking office."}]), etag='"s2"'))
    result = env.poll()
    matched = env.query("SELECT s.title, m.reason FROM matches m JOIN items i ON i.id = m.item_id"
                        " JOIN storylines s ON s.id = m.storyline_id WHERE i.key = 'g:urn:wire:2'")
    assert [t for t, _ in matched] == ["Yellen visit to China"], result.stdout
    assert 'Yellen (as "US Treasury chief")' in matched[0][1]


# -- issue 13: the command line to match the bot ---------------------------------------------


def test_poll_with_nothing_due_says_when_each_feed_is_next_due_and_force_polls(
    env: Env,
) -> None:
    env.vars["STORYWATCH_POLL_INTERVAL"] = "600"  # nothing comes due again during the test
    env.run("poll", "--once")
    result = env.run("poll", "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and all(": next due 20" in line for line in lines[:4]), lines
    assert lines[-1] == (
        "total: nothing due yet, 0 of 4 feeds polled; --force polls them all now"
    )
    forced = env.run("poll", "--once", "--force")
    assert "total: 4 feeds polled, 1 failed, 0 new items" in forced.stdout, forced.stdout
    assert env.server.requests_for("/rss")[-1].headers.get("if-none-match") == '"r1"'


def test_matches_shows_what_matched_and_why(env: Env) -> None:
    poll_with_wang_yi_arriving(env, "Wang Yi to visit Russia for security talks")
    (sid,), = env.query("SELECT m.storyline_id FROM matches m JOIN items i ON i.id = m.item_id "
                        "WHERE i.key = 'g:urn:wire:9'")
    shown = env.run("matches", "--since", "1d")
    assert shown.returncode == 0, shown.stderr
    assert "Wang Yi arrives in Moscow for talks with Lavrov — Wire" in shown.stdout
    assert f"#{sid} " in shown.stdout and "    why: " in shown.stdout
    other = env.run("matches", "--storyline", str(int(str(sid)) + 100))
    assert other.stdout.startswith(f"no matches for storyline {int(str(sid)) + 100}")
    bad = env.run("matches", "--since", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("storywatch: error: “soon” is not")


def test_storylines_remove(env: Env) -> None:
    added = env.run("storylines", "add", "Grain deal talks in Istanbul")
    sid = added.stdout.split()[2].rstrip(":")
    removed = env.run("storylines", "remove", sid)
    assert removed.returncode == 0 and removed.stdout.startswith(
        f"removed storyline {sid}: Grain deal talks in Istanbul (0 chat(s) followed it")
    assert "Grain deal" not in env.run("storylines", "list").stdout
    again = env.run("storylines", "remove", sid)
    assert again.returncode == 1
    assert again.stderr == (
        f"storywatch: error: no storyline with id {sid}; see: storywatch storylines list\n"
    )


def test_loopback_refusal_names_the_setting_that_allows_it(env: Env) -> None:
    del env.vars["STORYWATCH_ALLOW_PRIVATE_NETWORKS"]
    result = env.run("feeds", "add", env.server.url("/not-yet-watched"))
    assert result.returncode == 1
    assert result.stderr.startswith("storywatch: error: not added: ")
    assert "127.0.0.1 is a loopback address (STORYWATCH_ALLOW_PRIVATE_NETWORKS=true allows" \
        in result.stderr
