"""End-to-end: the real ``storywatch run`` process, a fake Bot API, a local feed.

Every check is what a user would see in Telegram. Waits poll for a condition
with a generous deadline; "nothing more arrives" is checked by waiting for a
later sentinel alert, never by sleeping.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN, REPO, BotProcess, Chat, Feed, wait_until, write_config
from tests.support.fake_telegram import FakeTelegram, validate_telegram_html
from tests.support.feed_server import FeedServer, Route

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STORY = "Wang Yi visit to Moscow"
DEVELOPMENTS = [
    "Chinese Foreign Minister Wang Yi arrives in Moscow for a visit",
    "Wang Yi and Lavrov sign energy agreement during Moscow visit",
    "Kremlin says Putin will receive Wang Yi on Thursday in Moscow",
    "Wang Yi ends Moscow visit with joint statement on grain exports",
    "Protesters gather outside embassy as Wang Yi visits Moscow",
]
SENTINEL_STORY = "Mars rover landing"
SENTINEL = "NASA confirms Mars rover landing in Jezero crater"


def count(chat: Chat, headline: str) -> int:
    return sum(1 for t in chat.alerts() if headline in t)


def share(fake: FakeTelegram, sid: str) -> None:
    """A chat's own storyline is private: an admin shares it so other chats may follow it."""
    reply = Chat(fake, ADMIN).say(f"/share {sid}")
    assert reply.startswith((f"Shared #{sid}:", f"#{sid}: ")) and "hared" in reply, reply


def test_no_token_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "STORYWATCH_CONFIG": str(write_config(tmp_path, [])),
           "STORYWATCH_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "set TELEGRAM_BOT_TOKEN" in done.stderr


def test_commands_as_a_user_and_an_admin(bot: BotProcess, fake: FakeTelegram, feeds: FeedServer,
                                         news: Feed) -> None:
    user, admin = Chat(fake, 501), Chat(fake, ADMIN)
    assert {"start", "help", "track"} <= set(fake.commands_for("default"))
    assert "addfeed" not in fake.commands_for("default")  # admins' menus only (issue 13)
    assert {"addfeed", "share", "delete"} <= set(fake.commands_for(f"chat:{ADMIN}"))

    assert "/track" in user.say("/start")
    help_text = user.say("/help")
    for cmd in ("/start", "/track", "/untrack", "/storylines", "/subscribe", "/unsubscribe",
                "/status"):
        assert cmd in help_text
    assert "e.g. /track Putin trip to China" in help_text

    reply = user.track(STORY)
    assert reply.startswith("Tracking #1: Wang Yi visit to Moscow") and "Wang Yi" in reply
    assert "✓ #1 Wang Yi visit to Moscow" in user.say("/storylines")
    assert "/track Putin trip to China" in user.say("/track")
    assert "not a storyline id" in user.say("/subscribe abc")
    assert "no storyline #99" in user.say("/subscribe 99")
    assert "I don't know /frobnicate" in user.say("/frobnicate")
    assert "only the bot's admins" in user.say(f"/addfeed {news.url}")
    assert "only the bot's admins" in user.say("/feeds")

    feeds.set_route("/tech.xml", Route(body=b"""<?xml version="1.0"?><rss version="2.0">
        <channel><title>Tech Daily</title><item><title>A</title><guid>a</guid></item>
        <item><title>B</title><guid>b</guid></item></channel></rss>"""))
    added = admin.say(f"/addfeed {feeds.url('/tech.xml')}")
    assert added.startswith("Added feed #2: Tech Daily with 2 item(s)"), added
    assert "already watched" in admin.say(f"/addfeed {feeds.url('/tech.xml')}")
    feeds.set_route("/gone.xml", Route(body=b"nope", status=404, content_type="text/plain"))
    assert "HTTP 404" in admin.say(f"/addfeed {feeds.url('/gone.xml')}")
    feeds.set_route("/page.html", Route(body=b"<html><body>hi</body></html>",
                                        content_type="text/html"))
    assert "doesn't look like a feed" in admin.say(f"/addfeed {feeds.url('/page.html')}")
    assert "not an http(s) address" in admin.say("/addfeed ftp://example.org/x")
    listing = admin.say("/feeds")
    assert "#1 " in listing and "#2 Tech Daily" in listing
    assert admin.say("/removefeed 2") == "Removed feed #2."
    assert "no feed #2" in admin.say("/removefeed 2")

    status = user.say("/status")
    assert status.startswith("This chat: follows 1 storyline(s), 1 created here\n"
                             "Alerts here: 0 sent, 0 pending"), status
    assert "\nBot: feeds 1 ok, 0 failing (of 1); last poll " in status

    seeded = user.say(
        "/track",
        reply_to_text="Japanese Prime Minister Shigeru Ishiba will travel to Washington "
        "next week for talks with President Donald Trump on tariffs, officials in Tokyo said. "
        "Ishiba's visit to Washington is his first since the election.",
    )
    assert seeded.startswith("Tracking #2: Shigeru Ishiba visit to the United States "
                             "(seeded from the message"), seeded

    assert "I don't know" not in user.say("/untrack 1")
    assert "#1" not in user.say("/storylines").split("\n", 1)[-1].split("#2")[0]


def test_groups_and_commands_addressed_to_other_bots(bot: BotProcess, fake: FakeTelegram) -> None:
    group = Chat(fake, -100500, user_id=777)
    assert "this group" in group.say("/start@storywatch_test_bot")
    before = len(fake.messages(-100500))
    fake.user_says(-100500, "/start@some_other_bot", user_id=777)
    assert "Following" not in group.say("/help@storywatch_test_bot")  # answered in order...
    assert len(fake.messages(-100500)) == before + 1  # ...and the other bot's /start was not


def test_alert_once_in_each_subscribed_chat_and_nowhere_else(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    alice, bob, carol = Chat(fake, 601), Chat(fake, 602), Chat(fake, 603)
    sid = alice.track(STORY).split("#")[1].split(":")[0]
    bob.say("/start")
    share(fake, sid)
    assert "Following" in bob.say(f"/subscribe {sid}")
    carol.say("/start")
    sentinel_id = carol.track(SENTINEL_STORY).split("#")[1].split(":")[0]
    share(fake, sentinel_id)
    alice.say(f"/subscribe {sentinel_id}")

    news.publish(DEVELOPMENTS[0])
    wait_until(lambda: count(alice, DEVELOPMENTS[0]) and count(bob, DEVELOPMENTS[0]),
               what="the alert in both subscribed chats")
    news.publish(SENTINEL)
    wait_until(lambda: count(alice, SENTINEL) and count(carol, SENTINEL), what="the sentinel")
    assert count(alice, DEVELOPMENTS[0]) == 1 and count(bob, DEVELOPMENTS[0]) == 1
    assert count(carol, DEVELOPMENTS[0]) == 0 and count(bob, SENTINEL) == 0
    alert = alice.alerts()[0]
    assert validate_telegram_html(alert) is None
    assert "<b>Wang Yi visit to Moscow</b>" in alert and "World News" in alert
    assert '<a href="https://news.example.test/world.xml/' in alert and "Why: " in alert


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_loses_nothing_and_doubles_nothing(
    bot: BotProcess, fake: FakeTelegram, news: Feed, how: signal.Signals
) -> None:
    alice, bob = Chat(fake, 701), Chat(fake, 702)
    sid = alice.track(STORY).split("#")[1].split(":")[0]
    share(fake, sid)
    bob.say(f"/subscribe {sid}")
    # Telegram pushes back on every alert, so they pile up in the outbox...
    fake.rate_limit(1, times=-1)
    for headline in DEVELOPMENTS[:3]:
        news.publish(headline)
    wait_until(lambda: sum(1 for r in fake.refused if r[2] == 429) >= 2,
               what="alerts being attempted")
    # ...when the bot goes down; some may be in flight.
    code = bot.stop(how)
    if how == signal.SIGTERM:
        assert code == 0, bot.output()
    fake.clear_faults()
    news.publish(DEVELOPMENTS[3])  # while it is down
    bot.start()
    news.publish(DEVELOPMENTS[4])  # after the restart
    # A restart, a 429 backlog and two polls: generous on a loaded machine.
    wait_until(lambda: all(count(c, h) for c in (alice, bob) for h in DEVELOPMENTS),
               timeout=180, what="every development in both chats")
    sentinel_id = alice.track(SENTINEL_STORY).split("#")[1].split(":")[0]
    share(fake, sentinel_id)
    bob.say(f"/subscribe {sentinel_id}")
    news.publish(SENTINEL)
    wait_until(lambda: count(alice, SENTINEL) and count(bob, SENTINEL), what="the sentinel")
    for chat in (alice, bob):
        assert [count(chat, h) for h in DEVELOPMENTS] == [1] * len(DEVELOPMENTS), chat.alerts()


def test_blocked_chat_is_no_longer_sent_to(bot: BotProcess, fake: FakeTelegram,
                                           news: Feed) -> None:
    alice, bob = Chat(fake, 801), Chat(fake, 802)
    sid = alice.track(STORY).split("#")[1].split(":")[0]
    share(fake, sid)
    bob.say(f"/subscribe {sid}")
    fake.blocked.add(802)
    news.publish(DEVELOPMENTS[0])
    wait_until(lambda: count(alice, DEVELOPMENTS[0]), what="alice's alert")
    wait_until(lambda: any(r[1] == 802 and r[2] == 403 for r in fake.refused),
               what="the 403 from bob's chat")
    news.publish(DEVELOPMENTS[1])
    wait_until(lambda: count(alice, DEVELOPMENTS[1]), what="alice's second alert")
    news.publish(SENTINEL)
    tracked = alice.track(SENTINEL_STORY)
    assert tracked.startswith("Tracking #"), alice.texts()
    sentinel_id = tracked.split("#")[1].split(":")[0]
    news.publish(DEVELOPMENTS[2])
    wait_until(lambda: count(alice, DEVELOPMENTS[2]), what="alice's third alert")
    assert sentinel_id
    assert sum(1 for r in fake.refused if r[1] == 802) == 1  # tried once, then never again
    assert bob.alerts() == []


def test_429_storm_delays_alerts_but_loses_none(bot: BotProcess, fake: FakeTelegram,
                                                news: Feed) -> None:
    chats = [Chat(fake, 900 + i) for i in range(3)]
    sid = chats[0].track(STORY).split("#")[1].split(":")[0]
    for c in chats[1:]:
        share(fake, sid)
        c.say(f"/subscribe {sid}")
    fake.rate_limit(2, times=15)
    for headline in DEVELOPMENTS[:3]:
        news.publish(headline)
    wait_until(lambda: all(count(c, h) for c in chats for h in DEVELOPMENTS[:3]),
               timeout=120, what="every alert after the storm")
    assert sum(1 for r in fake.refused if r[2] == 429) == 15
    for c in chats:
        assert [count(c, h) for h in DEVELOPMENTS[:3]] == [1, 1, 1]


def test_command_flood_gets_one_polite_answer(tmp_path: Path, fake: FakeTelegram,
                                              news: Feed) -> None:
    config = write_config(tmp_path, [news.url])
    config.write_text(config.read_text().replace("commands_per_minute = 20",
                                                 "commands_per_minute = 3"))
    process = BotProcess(tmp_path, fake, config, {}).start()
    try:
        spammer = Chat(fake, 1234)
        for _ in range(3):
            spammer.say("/help")
        assert "faster than I can take them" in spammer.say("/status")
        for _ in range(5):
            fake.user_says(1234, "/help")
        other = Chat(fake, 4321)
        assert "Welcome" in other.say("/start")
        wait_until(lambda: fake.pending_updates() == 0, what="the flood to be consumed")
        assert len(spammer.texts()) == 4  # three answers and one warning, then quiet
    finally:
        process.close()


def test_item_of_two_followed_storylines_is_one_message_naming_both(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    alice, bob, carol = Chat(fake, 1101), Chat(fake, 1102), Chat(fake, 1103)
    alice.track("Wang Yi visit to Russia")
    bob.track("Putin trip to China")
    # Carol tracks both herself (another chat's storylines are private to it).
    wang = carol.track("Wang Yi visit to Russia").split("#")[1].split(":")[0]
    putin = carol.track("Putin trip to China").split("#")[1].split(":")[0]
    bob.track(SENTINEL_STORY)
    carol.track(SENTINEL_STORY)

    both = "In Moscow, Putin tells Wang Yi he looks forward to his October trip to Beijing"
    news.publish(both)
    wait_until(lambda: all(count(c, both) for c in (alice, bob, carol)), what="the alerts")
    # A later item: each chat's alerts go out in order, so once it arrives in a
    # chat, anything more about ``both`` would have arrived before it.
    news.publish(SENTINEL)
    wait_until(lambda: count(carol, SENTINEL) and count(bob, SENTINEL), what="the sentinel")
    print("\n[carol follows both storylines; the fake Bot API received in her chat:]")
    for m in fake.messages(carol.chat_id):
        print(f"-- sendMessage #{m.message_id} (parse_mode={m.parse_mode}):\n{m.current}")
    [one] = [t for t in carol.alerts() if both in t]
    assert one.split("\n")[0] == (f"📰 <b>Wang Yi visit to Russia</b> (#{wang}) + "
                                  f"<b>Putin trip to China</b> (#{putin})")
    assert f"<i>Why (#{wang}): " in one and f"<i>Why (#{putin}): " in one
    assert validate_telegram_html(one) is None
    assert count(alice, both) == 1 and "(#" not in alice.alerts()[0]
    assert count(bob, both) == 1
