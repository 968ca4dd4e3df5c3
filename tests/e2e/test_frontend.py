"""End-to-end: the Telegram front end as users meet it (issue 13), through the fake Bot API.

The real ``storywatch run`` process talks to :class:`FakeTelegram` on 127.0.0.1.
Each test plays one point of the issue the way users did: several private
chats, groups (administrators and members), floods of commands, long lists.
With ``STORYWATCH_TRANSCRIPTS=DIR`` each test's transcript (updates in,
messages out) is written to ``DIR`` (see ``conftest.save_transcript``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.models import FeedState, Storyline
from bot.storage.repository import PENDING_PER_CHAT, Database
from tests.e2e.conftest import ADMIN, BotProcess, Chat, Feed, wait_until, write_config
from tests.support.fake_telegram import FakeTelegram, utf16_len, validate_plain
from tests.support.feed_server import Route

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STORY = "Wang Yi visit to Moscow"
NEWS = "Chinese Foreign Minister Wang Yi arrives in Moscow for a visit"
SENTINEL_STORY = "Mars rover landing"
SENTINEL = "NASA confirms Mars rover landing in Jezero crater"


def sid_of(reply: str) -> int:
    m = re.match(r"Tracking #(\d+):", reply)
    assert m, reply
    return int(m.group(1))


def alerts(fake: FakeTelegram, chat_id: int, headline: str) -> int:
    return sum(1 for t in fake.texts(chat_id) if t.startswith("📰") and headline in t)


def database(bot: BotProcess) -> Database:
    """The running bot's own database (SQLite in WAL mode: the test may read and
    write beside it; PostgreSQL: the bot's schema)."""
    return bot.open_database()


@pytest.fixture
def roomy_bot(tmp_path: Path, fake: FakeTelegram, news: Feed) -> Iterator[BotProcess]:
    """A bot with the default command budget (30 a minute per chat), against a fake
    Bot API that enforces Telegram's flood limits."""
    fake.flood_limits = True
    process = BotProcess(tmp_path, fake, write_config(tmp_path, [news.url],
                                                      commands_per_minute=30), {})
    try:
        process.start()
        wait_until(lambda: len(news.server.requests_for(news.path)) >= 2, what="priming")
        yield process
    finally:
        process.close()


# -- 1. replies within the flood limits ---------------------------------------------------


def test_reply_flood_every_reply_arrives_and_telegram_never_says_429(
    roomy_bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    burst, flooder, other = Chat(fake, 2001), Chat(fake, 2002), Chat(fake, 2004)
    group = -2003
    members = [Chat(fake, group, 3000 + i, chat_type="supergroup") for i in range(24)]
    sid = sid_of(other.track(STORY))

    burst_cmds = ["/help", "/status", "/storylines", "/start", "/help"]
    for text in burst_cmds:  # five at once in one private chat
        burst.send(text)
    for n in range(100):  # a hundred at once in another
        flooder.send(f"/track Storyline number {n} about trade")
    asked = {m.send("/status"): m for m in members}  # 24 members of a group
    news.publish(NEWS)  # an alert for `other` must share the budget fairly
    other.send("/start")

    def done() -> bool:
        return (len(fake.messages(burst.chat_id)) >= 5 and len(fake.messages(group)) >= 24
                and len(fake.messages(flooder.chat_id)) >= 31
                and len(fake.messages(other.chat_id)) >= 3)

    wait_until(done, timeout=180, what="every reply")
    assert fake.count_429() == 0

    assert len(fake.messages(burst.chat_id)) == 5
    flood = fake.texts(flooder.chat_id)
    confirmations = [t for t in flood if t.startswith("Preview of “Storyline number")]
    warnings = [t for t in flood if "faster than I can take them" in t]
    assert len(confirmations) == 30 and len(warnings) == 1 and len(flood) == 31
    assert flood.index(warnings[0]) < flood.index(confirmations[-1])  # told early, not last
    db = database(roomy_bot)
    try:
        # Previews create nothing; the chat keeps only its newest few open.
        assert db.count_storylines_created_by(flooder.chat_id) == 0
        assert 0 < len(db._query("SELECT id FROM pending_tracks WHERE chat_id = ?",
                                 (flooder.chat_id,))) <= PENDING_PER_CHAT
    finally:
        db.close()

    replies = fake.messages(group)
    assert sorted(m.reply_to for m in replies if m.reply_to) == sorted(asked)  # each quoted
    assert alerts(fake, other.chat_id, NEWS) == 1 and sid
    # The flood only lengthened the flooder's own queue: `other` was answered first.
    started = next(m for m in fake.messages(other.chat_id) if m.text.startswith("Welcome"))
    assert started.message_id < fake.messages(flooder.chat_id)[-1].message_id
    assert " ERROR " not in roomy_bot.output() and "Traceback" not in roomy_bot.output()
    sent = len(burst_cmds) + 100 + len(members) + 2
    received = sum(len(fake.messages(c)) for c in (burst.chat_id, flooder.chat_id, group,
                                                   other.chat_id))
    dropped = 100 - 31  # past the flooder's budget: one warning, then quiet
    print(f"\nreply flood: commands sent {sent}, messages received {received} "
          f"(replies {received - 1} = every command within the per-chat budget answered, "
          f"{dropped} over it dropped after one warning; alerts 1), "
          f"429s sent by the fake {fake.count_429()}")


def test_429_on_a_reply_is_waited_out_and_the_reply_sent(
    bot: BotProcess, fake: FakeTelegram
) -> None:
    user = Chat(fake, 2101)
    fake.rate_limit(1, chat_id=user.chat_id, times=2)
    assert "/track" in user.say("/help")
    assert fake.count_429() == 2 and len(fake.messages(user.chat_id)) == 1
    assert "Traceback" not in bot.output() and " ERROR " not in bot.output()


# -- 2. privacy ---------------------------------------------------------------------------


def test_a_chats_storylines_are_invisible_to_other_chats_until_shared(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    alice, bob, admin = Chat(fake, 2201), Chat(fake, 2202), Chat(fake, ADMIN)
    sid = sid_of(alice.track(STORY))
    bob.track(SENTINEL_STORY)
    assert STORY not in bob.say("/storylines")
    assert bob.say(f"/subscribe {sid}") == (
        f"There is no storyline #{sid} you can see. /storylines lists them."
    )
    assert bob.say(f"/untrack {sid}").startswith(f"There is no storyline #{sid} you can see")
    assert bob.say(f"/subscribe {sid + 1000}").startswith(  # same answer: ids reveal nothing
        f"There is no storyline #{sid + 1000} you can see")
    news.publish(NEWS)
    wait_until(lambda: alerts(fake, alice.chat_id, NEWS) == 1, what="alice's alert")
    news.publish(SENTINEL)
    wait_until(lambda: alerts(fake, bob.chat_id, SENTINEL) == 1, what="bob's sentinel")
    assert alerts(fake, bob.chat_id, NEWS) == 0

    assert admin.say(f"/share {sid}").startswith(f"Shared #{sid}: {STORY}")
    assert f"#{sid} {STORY} (shared)" in bob.say("/storylines")
    assert bob.say(f"/subscribe {sid}").startswith(f"Following #{sid}")


# -- 3. admin powers ----------------------------------------------------------------------


def test_untrack_acts_for_its_own_chat_and_delete_tells_the_followers(
    bot: BotProcess, fake: FakeTelegram
) -> None:
    alice, bob, carol, admin = Chat(fake, 2301), Chat(fake, 2302), Chat(fake, 2303), Chat(
        fake, ADMIN)
    sid = sid_of(alice.track(STORY))
    admin.say(f"/share {sid}")
    bob.say(f"/subscribe {sid}")
    admin.say(f"/subscribe {sid}")
    assert admin.say(f"/untrack {sid}") == (
        f"This chat no longer follows #{sid}: {STORY}. "
        "It stays for the 2 other chat(s) that follow it."
    )
    assert f"✓ #{sid} {STORY}" in alice.say("/storylines")

    cid = sid_of(carol.track(SENTINEL_STORY))
    assert admin.say(f"/untrack {cid}").startswith(f"There is no storyline #{cid} you can see")
    assert f"#{cid} {SENTINEL_STORY}" in carol.say("/storylines")
    assert carol.say(f"/untrack {cid}") == f"Removed storyline #{cid}: {SENTINEL_STORY}."

    assert bob.say(f"/delete {sid}") == "Sorry, only the bot's admins can use /delete."
    before = {c.chat_id: len(fake.messages(c.chat_id)) for c in (alice, bob)}
    assert admin.say(f"/delete {sid}") == (
        f"Deleted storyline #{sid}: {STORY} for everyone. "
        "Told the 2 other chat(s) that followed it."
    )
    for chat in (alice, bob):
        notice = fake.wait_reply(chat.chat_id, before[chat.chat_id])
        assert notice.startswith(f"The bot's admins deleted storyline #{sid}: {STORY}.")
    assert STORY not in alice.say("/storylines")


# -- 4. groups ----------------------------------------------------------------------------


def test_groups_welcome_admins_change_everyone_reads_migration_keeps_storylines(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    old, new, boss, member_id = -2401, -1002401, 2410, 2411
    fake.chat_admins[old] = {boss}
    fake.bot_membership(old, old="left", new="member", by_user=boss)
    fake.wait_for(lambda: len(fake.messages(old)) == 1, what="the welcome")
    assert fake.texts(old)[0].startswith("Welcome to Storywatch! I'll tell this group")

    member = Chat(fake, old, member_id, chat_type="group")
    admin = Chat(fake, old, boss, chat_type="group")
    refused = member.say(f"/track {STORY}")
    assert refused.startswith("In groups, only the group's administrators can change")
    assert fake.messages(old)[-1].reply_to == member.last_id  # quotes the command
    sid = sid_of(admin.track(STORY))
    assert fake.messages(old)[-1].reply_to == admin.last_id
    assert f"✓ #{sid} {STORY} (this chat's)" in member.say("/storylines")  # everyone reads
    assert member.say("/settings").startswith("Settings of this chat:\ntz: UTC")
    assert member.say("/settings tz Europe/Paris").startswith("In groups, only the group's")
    assert member.say(f"/untrack {sid}").startswith("In groups, only the group's")

    fake.migrate_group(old, new)
    wait_until(lambda: f"group {old} became supergroup {new}" in bot.output(),
               what="the migration to be handled")
    super_admin = Chat(fake, new, boss, chat_type="supergroup")
    assert f"✓ #{sid} {STORY} (this chat's)" in super_admin.say("/storylines")
    news.publish(NEWS)
    wait_until(lambda: alerts(fake, new, NEWS) == 1, what="the alert in the supergroup")
    assert not [r for r in fake.refused if r[1] == old]  # never sent to the old id
    assert super_admin.say(f"/untrack {sid}") == f"Removed storyline #{sid}: {STORY}."

    fake.bot_membership(new, old="member", new="kicked", by_user=boss, chat_type="supergroup")
    db = database(bot)
    try:
        wait_until(lambda: not db.chat_is_active(new), what="the group to be marked inactive")
    finally:
        db.close()


def test_a_user_who_blocks_then_unblocks_the_bot_gets_alerts_again(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    user = Chat(fake, 2451)
    user.track(STORY)
    db = database(bot)
    try:
        fake.bot_membership(user.chat_id, old="member", new="kicked", by_user=user.user_id,
                            chat_type="private")
        wait_until(lambda: not db.chat_is_active(user.chat_id), what="blocked")
        fake.bot_membership(user.chat_id, old="kicked", new="member", by_user=user.user_id,
                            chat_type="private")
        wait_until(lambda: db.chat_is_active(user.chat_id), what="unblocked")
    finally:
        db.close()
    news.publish(NEWS)
    wait_until(lambda: alerts(fake, user.chat_id, NEWS) == 1, what="the alert")
    assert not any(t.startswith("Welcome") for t in user.texts())  # no welcome in private


# -- 5. long lists ------------------------------------------------------------------------


def _walk_pages(fake: FakeTelegram, chat: Chat, command: str) -> list[str]:
    """Send ``command``, then press ⟩ until the last page; returns every page's text."""
    first = chat.say(command)
    msg = fake.messages(chat.chat_id)[-1]
    pages = [first]
    while msg.markup and any(b["text"] == "⟩" for b in msg.markup["inline_keyboard"][0]):
        data = next(b["callback_data"] for b in msg.markup["inline_keyboard"][0]
                    if b["text"] == "⟩")
        shown = msg.current
        fake.press(chat.chat_id, msg.message_id, data, user_id=chat.user_id)
        fake.wait_for(lambda m=msg, s=shown: m.current != s, what=f"page after {data}")
        pages.append(msg.current)
    return pages


def test_long_lists_page_with_buttons_and_every_page_fits(
    bot: BotProcess, fake: FakeTelegram
) -> None:
    user, admin = Chat(fake, 2501), Chat(fake, ADMIN)
    user.say("/start")
    admin.say("/start")
    db = database(bot)
    now = datetime.now(UTC)
    try:
        ids = []
        for n in range(50):
            title = f"Storyline {n:02d} " + "about the long negotiations over grain " * 4
            s = db.add_storyline(Storyline(0, title.strip()), now=now, created_by=user.chat_id)
            db.subscribe(user.chat_id, s.id, now=now)
            ids.append(s.id)
        later = FeedState(next_check=now + timedelta(days=1))
        for n in range(100):
            f = db.add_feed(f"https://feeds.example.test/{n:03d}/" + "section/" * 30 + "rss.xml",
                            now=now, title=f"Feed {n:03d}")
            db.record_feed_state(f.id, later, now=now)
    finally:
        db.close()

    # Button presses reach the bot only because it asks for them (Telegram, and the
    # fake, deliver no update kind left out of allowed_updates).
    assert {"message", "callback_query", "my_chat_member"} <= set(fake.allowed_updates)
    pages = _walk_pages(fake, user, "/storylines")
    assert len(pages) > 1
    listed = [int(i) for p in pages for i in re.findall(r"^[✓·] #(\d+) ", p, re.M)]
    assert listed == ids  # all 50, in order, each once
    for n, page in enumerate(pages, 1):
        assert validate_plain(page) is None and utf16_len(page) <= 4096
        assert page.split("\n", 1)[0] == (
            f"Storylines (✓ = this chat follows it), 50 in all, page {n} of {len(pages)}:")
        assert page.endswith("/subscribe ID to follow, /unsubscribe ID to stop.")
    assert len(fake.answered_callbacks) == len(pages) - 1

    feed_pages = _walk_pages(fake, admin, "/feeds")
    feeds_listed = [i for p in feed_pages for i in re.findall(r"^#(\d+) ", p, re.M)]
    assert len(feeds_listed) == 101 and len(set(feeds_listed)) == 101
    assert all(utf16_len(p) <= 4096 for p in feed_pages)
    assert all(p.endswith("/removefeed ID removes one; /addfeed URL adds one.")
               for p in feed_pages)
    # ⟨ goes back.
    msg = fake.messages(user.chat_id)[-1]
    back = next(b["callback_data"] for b in msg.markup["inline_keyboard"][0] if b["text"] == "⟨")
    fake.press(user.chat_id, msg.message_id, back, user_id=user.user_id)
    fake.wait_for(lambda: msg.current != pages[-1], what="the previous page")
    assert msg.current == pages[-2]


# -- 6. track from a link ----------------------------------------------------------------

ARTICLE = """<html><head><title>Wang Yi visits Moscow for talks with Lavrov | Example News</title>
</head><body><nav>Home · World · Sport · www.example.com</nav><article>
<h1>Wang Yi visits Moscow for talks with Lavrov</h1><p>By Jane Doe</p>
<p>MOSCOW (AP) — Chinese Foreign Minister Wang Yi arrived in Moscow on Monday for talks with
Sergei Lavrov on the war in Ukraine and on trade between China and Russia, officials said.</p>
<p>It is his first visit since Vladimir Putin met Xi Jinping in Beijing.</p></article>
<footer>Copyright Example News</footer></body></html>"""


def test_track_a_link_reads_the_page_title_and_text(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    news.server.set_route("/article.html", Route(body=ARTICLE.encode(), content_type="text/html"))
    news.server.set_route("/gone.html", Route(body=b"no", status=404, content_type="text/html"))
    user = Chat(fake, 2601)
    link = news.server.url("/article.html") + "#comments"
    reply = user.say(f"/track {link}")
    assert reply.startswith("Tracking #") and (
        ": Wang Yi visits Moscow for talks with Lavrov (seeded from the page at that link)"
        in reply.split("\n", 1)[0]), reply
    looks_for = reply.split("I'll look for:\n", 1)[1].split("\n\n", 1)[0].lower()
    for junk in ("www", "com", "http", "127", "comments", "article", "html", "jane", "ap"):
        assert not re.search(rf"\b{junk}\b", looks_for), (junk, looks_for)
    assert "wang yi" in looks_for and "moscow" in looks_for

    other = Chat(fake, 2602)
    seeded = other.say("/track", reply_to_text=news.server.url("/article.html"))
    assert "Wang Yi visits Moscow for talks with Lavrov (seeded from the page" in seeded
    assert user.say(f"/track {news.server.url('/gone.html')}") == (
        "Couldn't read that page: the server answered HTTP 404."
    )
    assert user.say(f"/track {news.url}").startswith(
        "Couldn't read that page: that link is not a web page")


# -- 7. titles ----------------------------------------------------------------------------


def test_titles_of_only_stopwords_are_refused_and_a_repeat_offers_the_existing_one(
    bot: BotProcess, fake: FakeTelegram
) -> None:
    user = Chat(fake, 2701)
    refused = user.say("/track the latest news of the day")
    assert "e.g. /track Putin trip to China" in refused and "Tracking" not in refused
    sid = sid_of(user.track(STORY))
    assert user.say(f"/track {STORY.lower()}") == (
        f"This chat already tracks #{sid}: {STORY}. Alerts for it come here; "
        f"/untrack {sid} stops it."
    )


# -- 8. alerts: the item's own outlet, the chat's time zone ----------------------------


def test_alert_names_the_items_outlet_and_shows_the_chats_time_zone(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    paris, utc = Chat(fake, 2801), Chat(fake, 2802)
    assert paris.say("/settings tz Europe/Paris").startswith(
        "Alert times in this chat are now in Europe/Paris")
    assert "tz: Europe/Paris" in paris.say("/settings")
    assert "not a time zone I know" in paris.say("/settings tz Mars/Olympus")
    paris.track(STORY)
    utc.track(STORY)
    news.publish(NEWS, source="Reuters")
    wait_until(lambda: alerts(fake, paris.chat_id, NEWS) and alerts(fake, utc.chat_id, NEWS),
               what="both alerts")
    published = parsedate_to_datetime(news.items[0]["pubDate"])
    local = published.astimezone(ZoneInfo("Europe/Paris"))
    at_paris = f"Reuters · {local:%H:%M %Z}, {local.day} {local:%b %Y}"
    at_utc = f"Reuters · {published.astimezone(UTC):%H:%M} UTC"
    assert at_paris in fake.texts(paris.chat_id)[-1]
    assert at_utc in fake.texts(utc.chat_id)[-1]
    assert "World News" not in fake.texts(paris.chat_id)[-1]
