"""End-to-end (issue 17): quiet hours and digests, /settings buttons, /timeline with its chart.

The real ``storywatch run`` process against the fake Bot API and a local feed,
its state in a real SQLite file. With ``STORYWATCH_TRANSCRIPTS=DIR`` each test's
transcript is written to DIR, and the timeline test saves the chart it received
as DIR/timeline-example.png.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.storage.repository import Database
from tests.conftest import TOKEN
from tests.e2e.conftest import REPO, BotProcess, Chat, Feed, wait_until, write_config
from tests.support.engines import database_env
from tests.support.fake_telegram import FakeTelegram, validate_telegram_html
from tests.support.feed_server import Route, rss_document

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STORY = "Wang Yi visit to Moscow"
TOPICS = ["energy deal", "grain exports", "Arctic shipping", "nuclear talks", "visa rules",
          "bank payments", "Ukraine peace plan", "rail corridor", "space cooperation",
          "gas pipeline", "student exchange", "tourism flows"]
OUTLETS = ["Reuters", "Associated Press", "TASS", "Xinhua"]
BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def headline(n: int) -> str:
    return (f"Wang Yi in Moscow visit: {TOPICS[n % len(TOPICS)]} discussed at length by both "
            f"delegations, officials say, report {n}")


def publish(news: Feed, numbers: range, *, days_apart: float = 3.0) -> None:
    """Matching items dated ``days_apart`` apart (so none is collapsed into another)."""
    for n in numbers:
        news.items.insert(0, {
            "guid": f"story-{n}", "title": headline(n),
            "link": f"https://news.example.test/world/{n}", "description": headline(n),
            "pubDate": format_datetime(BASE + timedelta(days=days_apart * n), usegmt=True),
            "source": OUTLETS[n % len(OUTLETS)],
        })
    news.server.set_route(news.path, Route(body=rss_document(news.title, news.items)))


@pytest.fixture
def bot(tmp_path: Path, fake: FakeTelegram, news: Feed, engine: str) -> Iterator[BotProcess]:
    """The bot on each engine, with no hourly alert bound in the way (these tests
    send many alerts)."""
    with database_env(engine) as env:
        yield from _bot(tmp_path, fake, news, env)


def _bot(tmp_path: Path, fake: FakeTelegram, news: Feed,
         env: dict[str, str]) -> Iterator[BotProcess]:
    process = BotProcess(tmp_path, fake, write_config(
        tmp_path, [news.url], alerts_per_storyline_hour=10_000), env)
    try:
        process.start()
        wait_until(lambda: len(news.server.requests_for(news.path)) >= 2, what="priming")
        yield process
    finally:
        process.close()
        assert TOKEN not in process.output(), "the token leaked into the logs"


# The timeline's 18 developments: on these days after BASE, half an hour apart, so
# some days have several (each names its own report number: not the same news).
TIMELINE_DAYS = [0, 0, 1, 3, 3, 3, 4, 7, 8, 8, 10, 11, 11, 11, 11, 14, 15, 15]


def publish_timeline(news: Feed) -> None:
    # Another outlet's rewrite of report 17, ten minutes later: the same
    # development (listed below the others, so read after the original).
    news.items.insert(0, {
        "guid": "story-17-rewrite", "title": headline(17).replace("officials say", "sources say"),
        "link": "https://other.example.test/17", "description": headline(17),
        "pubDate": format_datetime(BASE + timedelta(days=15, hours=8.5, minutes=10),
                                   usegmt=True),
        "source": "Xinhua",
    })
    for n, day in enumerate(TIMELINE_DAYS):
        news.items.insert(0, {
            "guid": f"story-{n}", "title": headline(n),
            "link": f"https://news.example.test/world/{n}", "description": headline(n),
            "pubDate": format_datetime(BASE + timedelta(days=day, hours=n / 2), usegmt=True),
            "source": OUTLETS[n % len(OUTLETS)],
        })
    news.server.set_route(news.path, Route(body=rss_document(news.title, news.items)))


def save_full(fake: FakeTelegram, name: str) -> None:
    """With STORYWATCH_TRANSCRIPTS, also every message the bot sent, in full."""
    where = os.environ.get("STORYWATCH_TRANSCRIPTS")
    if not where:
        return
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    blocks = []
    for m in fake.all_messages():
        kind = f"photo, PNG {len(m.photo):,} bytes, caption" if m.photo else (
            m.parse_mode or "plain")
        edited = f" (edited {len(m.edits)}x, as it stands now)" if m.edits else ""
        blocks.append(f"--- chat {m.chat_id}, msg {m.message_id} [{kind}]{edited}\n{m.current}")
    (out / f"{name}-full.txt").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def open_db(bot: BotProcess) -> Database:
    return bot.open_database()


def digest_state(bot: BotProcess) -> tuple[list[str], dict[str, int], dict[str, int], int]:
    """The digests' stored parts, the outbox and digest counts, and alerts still held."""
    db = open_db(bot)
    try:
        parts = [p for r in db._query("SELECT parts FROM digests ORDER BY id")
                 for p in json.loads(r["parts"])]
        return parts, db.outbox_counts(), db.digest_counts(), db.held_count(7001)
    finally:
        db.close()


def test_quiet_hours_then_one_digest_even_with_a_kill_in_the_middle(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    chat = Chat(fake, 7001)
    sid = re.match(r"Tracking #(\d+)", chat.track(STORY)).group(1)  # type: ignore[union-attr]
    assert "Europe/Paris" in chat.say("/settings tz Europe/Paris")
    # Quiet hours that started half an hour ago and end at the next whole minute
    # at least 25 s away (minutes are the settings' resolution).
    now = datetime.now(ZoneInfo("Europe/Paris"))
    end = (now + timedelta(seconds=85)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=30)
    reply = chat.say(f"/settings quiet {start:%H:%M}-{end:%H:%M}")
    assert reply.startswith(f"Quiet hours {start:%H:%M}-{end:%H:%M} (Europe/Paris)"), reply
    settings = chat.say("/settings")
    assert f"delivery: instant, but quiet {start:%H:%M}-{end:%H:%M}" in settings

    # 60 developments, and another outlet's rewrite of the last one (the same news).
    news.items.insert(0, {
        "guid": "story-59-rewrite", "title": headline(59).replace("officials say", "sources say"),
        "link": "https://other.example.test/59", "description": headline(59),
        "pubDate": format_datetime(BASE + timedelta(days=3 * 59, minutes=10), usegmt=True),
        "source": "Reuters",
    })
    publish(news, range(60))
    wait_until(lambda: digest_state(bot)[3] == 60 and digest_state(bot)[1]["pending"] == 61,
               what="60 alerts (and the rewrite) held in quiet hours")
    assert chat.alerts() == [] and not any(t.startswith("🗞") for t in chat.texts())
    assert "waiting for the next digest: 60 alert(s)" in chat.say("/settings")
    assert "Alerts here: 0 sent, 61 pending (60 waiting for a digest)" in chat.say("/status")

    # Quiet hours end: the digest comes. Killed (SIGKILL) as soon as its first part has
    # arrived, i.e. in the middle of it; restarted.
    wait_until(lambda: any(t.startswith("🗞") for t in chat.texts()), timeout=150,
               what="the digest's first part")
    bot.kill()
    at_kill = [t for t in chat.texts() if t.startswith("🗞")]
    fake.events.append((time.time(), f"✂ the bot is killed (SIGKILL) after {len(at_kill)} "
                                     "part(s) of the digest, then started again"))
    bot.start()
    wait_until(lambda: digest_state(bot)[2]["sent"] == 1, timeout=90, what="the digest sent")
    parts, outbox, digests, held = digest_state(bot)
    got = [m for m in fake.messages(chat.chat_id) if m.text.startswith("🗞")]
    assert len(parts) >= 3 and 1 <= len(at_kill) < len(parts), (len(parts), len(at_kill))
    for m in got:
        assert validate_telegram_html(m.text) is None and m.parse_mode == "HTML"
    texts = [m.text for m in got]
    # Every part arrived, in order; a part can come twice only if the kill fell between
    # Telegram's answer and the write that records it (at most one such part per kill).
    assert [p for p in parts if p in texts] == parts
    assert len(texts) - len(parts) <= 1
    assert [t for i, t in enumerate(texts) if t not in texts[:i]] == parts
    print(f"\ndigest: {len(parts)} parts, killed after {len(at_kill)}, "
          f"{len(texts) - len(parts)} part(s) repeated")
    body = "\n".join(parts)
    for n in range(60):  # each development once, with its outlet
        assert body.count(f"report {n}</a>") == 1, n
        assert re.search(rf"report {n}</a> — {OUTLETS[n % len(OUTLETS)]}", body), n
    assert "report 59</a> — Xinhua, Reuters (2 reports)" in body
    assert parts[0].startswith(f"🗞 <b>Digest</b> · {end:%H:%M} CE")
    assert "60 developments in 1 storyline" in parts[0]
    assert all("(continued)" in p.split("\n")[0] for p in parts[1:])
    assert f"(#{sid}" in parts[-1]
    assert outbox["sent"] == 61 and outbox["pending"] == outbox["sending"] == 0 and held == 0
    assert digests["sent"] == 1 and digests["pending"] == digests["sending"] == 0
    assert chat.alerts() == []  # nothing came one by one

    # After the quiet hours, alerts come at once again.
    publish(news, range(60, 61))
    wait_until(lambda: any("report 60" in t for t in chat.alerts()), what="an instant alert")
    save_full(fake, "quiet-hours-digest")


def test_settings_buttons_and_commands(bot: BotProcess, fake: FakeTelegram) -> None:
    chat = Chat(fake, 7101)
    chat.track(STORY)
    shown = chat.say("/settings")
    assert "delivery: instant" in shown and "digest only: none" in shown
    msg = next(m for m in fake.messages(chat.chat_id) if m.text == shown)
    labels = [b["text"] for row in (msg.markup or {})["inline_keyboard"] for b in row]
    assert labels == ["✓ Instant", "Digest", "Quiet hours"]
    fake.press(chat.chat_id, msg.message_id, "set:digest", user_id=chat.user_id)
    wait_until(lambda: "delivery: digest at 08:00, 18:00" in msg.current,
               what="the settings message redrawn")
    labels = [b["text"] for row in (msg.markup or {})["inline_keyboard"] for b in row]
    assert labels == ["Instant", "✓ Digest", "Quiet hours"]

    assert "at 07:30, 19:00 (UTC)" in chat.say("/settings digest 19:00, 7:30")
    assert "not a time like 08:00" in chat.say("/settings digest 7pm")
    assert "now comes only in digests, at 07:30, 19:00" in chat.say("/settings digestonly 1 on")
    assert "no storyline #42" in chat.say("/settings digestonly 42 on")
    assert "digest only: #1 Wang Yi visit to Moscow" in chat.say("/settings")
    assert chat.say("/settings instant").startswith("Alerts now come to this chat as they")

    # In a group, a member's press changes nothing; an administrator's does.
    group, member, admin = -7102, 7103, 7104
    fake.chat_admins[group] = {admin}
    Chat(fake, group, admin).say("/settings")
    gmsg = fake.messages(group)[-1]
    fake.press(group, gmsg.message_id, "set:quiet", user_id=member)
    wait_until(lambda: any("Only the group's administrators" in str(a.get("text"))
                           for a in fake.answered_callbacks), what="the refusal")
    assert "delivery: instant" in gmsg.current
    fake.press(group, gmsg.message_id, "set:quiet", user_id=admin)
    wait_until(lambda: "delivery: instant, but quiet 22:00-07:00" in gmsg.current,
               what="an administrator's press")


def test_timeline_with_its_chart_then_without_the_charts_extra(
    bot: BotProcess, fake: FakeTelegram, news: Feed, tmp_path: Path
) -> None:
    chat = Chat(fake, 7201)
    sid = re.match(r"Tracking #(\d+)", chat.track(STORY)).group(1)  # type: ignore[union-attr]
    assert "no developments yet" in chat.say(f"/timeline {sid}")
    publish_timeline(news)
    wait_until(lambda: len(chat.alerts()) == 18 and any("+1 more: Xinhua" in a
                                                         for a in chat.alerts()),
               timeout=120, what="18 alerts, the last one with the rewrite folded in")

    before = len(fake.messages(chat.chat_id))
    text = chat.say(f"/timeline {sid}")
    wait_until(lambda: any(m.photo for m in fake.messages(chat.chat_id)[before:]),
               what="the chart")
    photo = next(m for m in fake.messages(chat.chat_id)[before:] if m.photo)
    assert photo.photo is not None and photo.photo.startswith(b"\x89PNG\r\n\x1a\n")
    assert photo.text == f"#{sid} {STORY}: developments per day (UTC)"
    assert text.startswith(f"Timeline of #{sid} {STORY}: 18 developments, newest first, "
                           "page 1 of 2:")
    assert "The chart below counts developments per day." in text
    lines = [ln for ln in text.split("\n") if " · Wang Yi" in ln]
    assert len(lines) == 15 and "report 17" in lines[0]  # newest first
    assert re.match(r"^16 Jun 2026 17:30 · Wang Yi in Moscow visit: .* report 17 — "
                    r"Associated Press, Xinhua \(2 reports\)$", lines[0]), lines[0]
    if os.environ.get("STORYWATCH_TRANSCRIPTS"):
        out = Path(os.environ["STORYWATCH_TRANSCRIPTS"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "timeline-example.png").write_bytes(photo.photo)

    # Page 2 through the ⟩ button: the rest, and no second chart.
    msg = next(m for m in fake.messages(chat.chat_id) if m.text == text)
    fake.press(chat.chat_id, msg.message_id, f"page:timeline.{sid}:2", user_id=chat.user_id)
    wait_until(lambda: "page 2 of 2" in msg.current, what="page 2")
    assert "report 0 — Reuters" in msg.current and "report 17" not in msg.current
    assert sum(1 for m in fake.messages(chat.chat_id) if m.photo) == 1

    # The command line prints the same lines (all of them).
    env = {**bot.env(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bot", "timeline", sid], env=env,
                          cwd=bot.tmp, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed[0] == f"Timeline of #{sid} {STORY}: 18 developments, newest first:"
    assert printed[1:16] == lines and len(printed) == 19
    bad = subprocess.run([sys.executable, "-m", "bot", "timeline", "99"], env=env,
                         cwd=bot.tmp, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "there is no storyline 99" in bad.stderr

    # Without matplotlib (a package that refuses to import stands in for its absence):
    # the timeline is text only, and says so.
    hidden = tmp_path / "no-charts"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text(
        "raise ImportError('matplotlib is not installed (hidden by the test)')\n")
    assert bot.stop(signal.SIGTERM) == 0
    bot.extra_env["PYTHONPATH"] = f"{hidden}{os.pathsep}{REPO}"
    bot.start()
    photos = sum(1 for m in fake.messages(chat.chat_id) if m.photo)
    text = chat.say(f"/timeline {sid}")
    assert "No chart: this bot was installed without its charts extra " \
           "(pip install 'storywatch[charts]')." in text
    assert text.split("\n")[1:16] == lines
    chat.say("/status")  # the chart would have been sent before this reply
    assert sum(1 for m in fake.messages(chat.chat_id) if m.photo) == photos
    save_full(fake, "timeline")
