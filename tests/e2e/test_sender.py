"""The sender against the fake Bot API over real HTTP, with a real SQLite outbox.

In-process (no subprocess): python-telegram-bot's real ``Bot`` talks to
:class:`FakeTelegram` on 127.0.0.1, and faults are injected there.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.ratelimit import SendLimiter, SendLimits
from bot.delivery.sender import UNCERTAIN_TOTAL_KEY, Sender, SenderOptions
from bot.models import FeedState, Item, Match, Storyline
from bot.storage.repository import Database, MatchToStore
from tests.conftest import TOKEN
from tests.support.fake_telegram import FakeTelegram, validate_telegram_html

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")

# The send time-out leaves a loaded machine room: a send that is merely slow must not
# count as timed out (an uncertain resend) where a test counts messages exactly.
FAST = SenderOptions(
    send_timeout=5.0, uncertain_delay=0.3, backoff_base=0.1, idle_poll=0.1, max_hold=1.5
)


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = Bot(TOKEN, base_url=fake.api_url)
    async with b:
        yield b


class World:
    """A primed feed, one storyline and subscribed chats; ``publish`` makes alerts."""

    def __init__(self, db: Database, chats: list[int]) -> None:
        self.db = db
        now = datetime.now(UTC)
        self.feed = db.add_feed("http://127.0.0.1:9/feed.xml", now=now, title="Feed")
        db.commit_poll(self.feed.id, FeedState(), now=now, title="Feed", items=[], matches=[])
        self.story = db.add_storyline(Storyline(0, "Wang Yi visit"), now=now, created_by=chats[0])
        for c in chats:
            db.upsert_chat(c, now=now, type_="private" if c > 0 else "supergroup")
            db.subscribe(c, self.story.id, now=now)
        self.n = 0

    def add_story(self, title: str, chats: list[int]) -> Storyline:
        """Another storyline, followed by ``chats`` (already known)."""
        story = self.db.add_storyline(Storyline(0, title), now=datetime.now(UTC),
                                      created_by=chats[0])
        for c in chats:
            self.db.subscribe(c, story.id, now=datetime.now(UTC))
        return story

    def publish(
        self, count: int = 1, *, source: str = "Src", dup_of: str | None = None,
        stories: list[Storyline] | None = None,
    ) -> list[str]:
        """``count`` new items, each matching ``stories`` (the first storyline by default)."""
        now = datetime.now(UTC)
        items, matches = [], []
        for _ in range(count):
            self.n += 1
            key = f"k{self.n}"
            items.append(Item(key, f"Headline {self.n} <&>", "Summary & more", f"https://e.org/{key}",
                              now, source, self.feed.id))
            dup = (self.feed.id, dup_of) if dup_of else None
            for story in stories or [self.story]:
                matches.append(MatchToStore(Match(key, story.id, 1.0, f"why {story.id}"), dup))
        self.db.commit_poll(self.feed.id, FeedState(), now=now, title="Feed", items=items,
                            matches=matches)
        return [i.key for i in items]


async def until(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return
        await asyncio.sleep(0.05)
    assert cond(), f"timed out waiting for {what}"


async def run_sender(sender: Sender, cond: Callable[[], bool], what: str) -> None:
    sender.start()
    try:
        await until(cond, what=what)
    finally:
        await sender.stop(grace=10)


def headlines(fake: FakeTelegram, chat: int) -> list[str]:
    return sorted(t.split("\n")[1] for t in fake.texts(chat))


async def test_each_alert_once_per_chat_in_valid_html(fake: FakeTelegram, db: Database,
                                                      bot: Bot) -> None:
    w = World(db, [11, 12, -100])
    w.publish(3)
    sender = Sender(db, bot, options=FAST)
    await run_sender(sender, lambda: db.outbox_counts()["sent"] == 9, "9 sent")
    for chat in (11, 12, -100):
        texts = fake.texts(chat)
        assert len(texts) == 3
        assert all(validate_telegram_html(t) is None for t in texts)
        assert all(m.parse_mode == "HTML" for m in fake.messages(chat))
    assert "Headline 1 &lt;&amp;&gt;" in fake.texts(11)[0]
    assert db.outbox_counts()["pending"] == 0


async def test_429_storm_delays_but_loses_nothing(fake: FakeTelegram, db: Database,
                                                  bot: Bot) -> None:
    w = World(db, [21, 22])
    w.publish(4)
    fake.rate_limit(1, times=12)
    sender = Sender(db, bot, options=FAST)
    await run_sender(sender, lambda: db.outbox_counts()["sent"] == 8, "8 sent after the storm")
    assert len([r for r in fake.refused if r[2] == 429]) == 12
    for chat in (21, 22):
        assert len(fake.texts(chat)) == 4 and len(set(fake.texts(chat))) == 4
    assert db.outbox_counts()["failed"] == 0


async def test_429_does_not_use_up_attempts(fake: FakeTelegram, db: Database, bot: Bot) -> None:
    World(db, [23]).publish(1)
    fake.rate_limit(1, times=4)
    opts = SenderOptions(send_timeout=5.0, backoff_base=0.1, idle_poll=0.1, max_attempts=2)
    await run_sender(Sender(db, bot, options=opts), lambda: db.outbox_counts()["sent"] == 1,
                     "sent after four 429s with max_attempts=2")


async def test_blocked_chat_is_deactivated_and_not_sent_to(fake: FakeTelegram, db: Database,
                                                           bot: Bot) -> None:
    w = World(db, [31, 32])
    fake.blocked.add(31)
    w.publish(2)
    sender = Sender(db, bot, options=FAST)
    await run_sender(sender, lambda: db.outbox_counts()["sent"] == 2, "chat 32 served")
    assert not db.chat_is_active(31)
    assert fake.texts(31) == []
    refused_before = len(fake.refused)
    w.publish(1)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 3,
                     "the next alert")
    assert len(fake.refused) == refused_before  # no further attempt at the blocked chat
    assert db.outbox_counts()["dropped"] == 2


async def test_migrated_group_gets_alerts_at_its_new_id(fake: FakeTelegram, db: Database,
                                                        bot: Bot) -> None:
    w = World(db, [41, -200])
    fake.migrated[-200] = -1000200
    w.publish(2)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 4,
                     "4 sent")
    assert len(fake.texts(-1000200)) == 2 and fake.texts(-200) == []
    assert db.chat_is_active(-1000200)
    rows = db.storylines_for_chat(-1000200)
    assert rows and rows[0].subscribed


async def test_html_refused_falls_back_to_plain_text(fake: FakeTelegram, db: Database,
                                                     bot: Bot) -> None:
    World(db, [51]).publish(1)
    fake.fail("sendMessage", status=400,
              description="Bad Request: can't parse entities: unsupported start tag", times=1)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 1,
                     "plain text sent")
    [msg] = fake.messages(51)
    assert msg.parse_mode is None and "https://e.org/k1" in msg.text and "<" in msg.text


async def test_server_errors_retry_with_backoff(fake: FakeTelegram, db: Database,
                                                bot: Bot) -> None:
    World(db, [61]).publish(1)
    fake.fail("sendMessage", status=502, description="Bad Gateway", times=2)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 1,
                     "sent after two 502s")
    assert len(fake.texts(61)) == 1


async def test_persistent_errors_end_in_failed_with_reason(fake: FakeTelegram, db: Database,
                                                           bot: Bot) -> None:
    World(db, [62]).publish(1)
    fake.fail("sendMessage", status=500, description="Internal Server Error", times=-1)
    opts = SenderOptions(send_timeout=5.0, backoff_base=0.05, idle_poll=0.05, max_attempts=3)
    await run_sender(Sender(db, bot, options=opts), lambda: db.outbox_counts()["failed"] == 1,
                     "failed")
    assert len([r for r in fake.refused if r[2] == 500]) == 3


async def test_timed_out_send_is_retried_once_and_counted(fake: FakeTelegram, db: Database,
                                                          bot: Bot) -> None:
    World(db, [71]).publish(1)
    # Telegram got it but answered too late: the first copy arrives, the client times out.
    fake.fail("sendMessage", status=200, description="", times=1, delay=6.0, deliver=True)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 1,
                     "sent on the single retry")
    assert len(fake.texts(71)) == 2  # the one duplicate the design accepts...
    assert db.get_meta(UNCERTAIN_TOTAL_KEY) == "1"  # ...and it is on record


async def test_twice_timed_out_send_is_not_repeated_again(fake: FakeTelegram, db: Database,
                                                          bot: Bot) -> None:
    World(db, [72]).publish(1)
    fake.fail("sendMessage", status=200, description="", times=-1, delay=6.0, deliver=True)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["failed"] == 1,
                     "failed as uncertain")
    await asyncio.sleep(0.5)
    assert len(fake.texts(72)) == 2


async def test_sends_that_never_left_for_want_of_a_connection_are_each_sent_once(
    fake: FakeTelegram, db: Database
) -> None:
    """A send that times out waiting for a free connection never reached Telegram
    (python-telegram-bot says so). Three chats share one connection and Telegram
    answers each after a second: the sends that wait are not counted as uncertain,
    and none is given up as 'timed out twice' (it was: an alert lost)."""
    chats = [93, 94, 95]
    World(db, chats).publish(1)
    for chat in chats:
        fake.fail("sendMessage", chat_id=chat, status=200, description="", delay=1.0,
                  deliver=True)
    request = HTTPXRequest(connection_pool_size=1, pool_timeout=0.2)
    async with Bot(TOKEN, base_url=fake.api_url, request=request) as bot:
        sender = Sender(db, bot, options=FAST)
        await run_sender(sender, lambda: db.outbox_counts()["pending"]
                         + db.outbox_counts()["sending"] == 0, "all settled")
    assert db.outbox_counts()["failed"] == 0 and db.outbox_counts()["sent"] == 3
    assert [len(fake.texts(c)) for c in chats] == [1, 1, 1]
    assert db.get_meta(UNCERTAIN_TOTAL_KEY) is None


async def test_duplicate_edits_parent_with_more_sources(fake: FakeTelegram, db: Database,
                                                        bot: Bot) -> None:
    w = World(db, [81])
    [first] = w.publish(1, source="Reuters")
    sender = Sender(db, bot, options=FAST)
    await run_sender(sender, lambda: db.outbox_counts()["sent"] == 1, "first alert")
    w.publish(1, source="AP", dup_of=first)
    w.publish(1, source="AFP", dup_of=first)
    # The second duplicate is folded into the first one's pending edit: one edit
    # call redraws the message with both.
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 2,
                     "one edit")
    assert db.outbox_counts()["pending"] == 0 and db.outbox_counts()["dropped"] == 1
    [msg] = fake.messages(81)
    assert msg.current.endswith("<i>+2 more: AP, AFP</i>")
    assert "Headline 1" in msg.current and validate_telegram_html(msg.current) is None


async def test_a_timed_out_edit_is_retried_without_counting_a_possible_duplicate(
    fake: FakeTelegram, db: Database, bot: Bot
) -> None:
    """An edit (another outlet's report of a development) whose answer never came is
    tried again like any failed call: an edit cannot show twice, so it is not an
    uncertain send, counted and given up after a second time-out."""
    w = World(db, [82])
    [first] = w.publish(1, source="Reuters")
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 1,
                     "first alert")
    w.publish(1, source="AP", dup_of=first)
    fake.fail("editMessageText", chat_id=82, status=504, description="Gateway Timeout",
              delay=FAST.send_timeout + 1)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 2,
                     "the edit, on its retry")
    [msg] = fake.messages(82)
    assert msg.current.endswith("<i>+1 more: AP</i>")
    assert db.outbox_counts()["failed"] == 0
    assert db.get_meta(UNCERTAIN_TOTAL_KEY) is None


async def test_limiter_spaces_sends_to_one_chat(fake: FakeTelegram, db: Database,
                                                bot: Bot) -> None:
    World(db, [91]).publish(3)
    limiter = SendLimiter(SendLimits(per_chat_window=1.0))
    await run_sender(Sender(db, bot, options=FAST, limiter=limiter),
                     lambda: db.outbox_counts()["sent"] == 3, "3 sent")
    times = [m.at for m in fake.messages(91)]
    # Counted at the fake's arrival, as Telegram counts: a loaded machine's jitter in
    # two sends' transit is allowed, a send that skipped its turn is not.
    assert all(b - a >= 0.8 for a, b in itertools.pairwise(times))


async def test_stop_gives_back_unsent_rows(fake: FakeTelegram, db: Database, bot: Bot) -> None:
    World(db, [95]).publish(5)
    sender = Sender(db, bot, options=FAST)  # 1/s per chat: five rows take four seconds
    sender.start()
    await until(lambda: len(fake.texts(95)) >= 1, what="first send")
    await sender.stop(grace=10)
    counts = db.outbox_counts()
    assert counts["sending"] == 0 and counts["sent"] + counts["pending"] == 5
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 5,
                     "the rest after restart")
    assert len(set(fake.texts(95))) == 5 == len(fake.texts(95))


def _one_message_naming_both(fake: FakeTelegram, chat: int, world: World,
                             other: Storyline) -> str:
    [msg] = fake.messages(chat)
    head = msg.current.split("\n")[0]
    assert head == (f"📰 <b>{world.story.title}</b> (#{world.story.id}) + "
                    f"<b>{other.title}</b> (#{other.id})")
    assert f"Why (#{world.story.id}): why {world.story.id}" in msg.current
    assert f"Why (#{other.id}): why {other.id}" in msg.current
    assert validate_telegram_html(msg.current) is None
    return msg.current


async def test_item_of_two_followed_storylines_is_one_message_naming_both(
    fake: FakeTelegram, db: Database, bot: Bot
) -> None:
    w = World(db, [111, 112])
    other = w.add_story("Putin trip to China", [111])
    w.publish(1, stories=[w.story, other])
    # batch=1: the claim still takes chat 111's two rows together.
    opts = SenderOptions(send_timeout=5.0, idle_poll=0.1, batch=1)
    await run_sender(Sender(db, bot, options=opts), lambda: db.outbox_counts()["sent"] == 3,
                     "3 rows sent")
    _one_message_naming_both(fake, 111, w, other)
    [only] = fake.texts(112)
    assert only.startswith(f"📰 <b>{w.story.title}</b>\n") and other.title not in only
    rows = db.message_rows(1)  # the first row written: chat 111's, first storyline
    assert [(r.chat_id, r.storyline_id) for r in rows] == [(111, w.story.id), (111, other.id)]
    assert rows[0].message_id == rows[1].message_id == fake.messages(111)[0].message_id


async def test_a_429_or_a_crash_mid_message_never_splits_or_doubles_it(
    fake: FakeTelegram, db: Database, bot: Bot
) -> None:
    w = World(db, [121])
    other = w.add_story("Putin trip to China", [121])
    w.publish(1, stories=[w.story, other])
    db.claim_due_alerts(datetime.now(UTC), 1)  # a crash right after the claim...
    assert db.recover_in_flight() == 2  # ...puts the whole message back
    fake.rate_limit(1, times=2)
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 2,
                     "sent after two 429s")
    assert len([r for r in fake.refused if r[2] == 429]) == 2
    _one_message_naming_both(fake, 121, w, other)


async def test_later_report_edits_the_message_naming_both(
    fake: FakeTelegram, db: Database, bot: Bot
) -> None:
    w = World(db, [131])
    other = w.add_story("Putin trip to China", [131])
    [first] = w.publish(1, source="Reuters", stories=[w.story, other])
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 2,
                     "the alert")
    w.publish(1, source="AP", dup_of=first, stories=[w.story, other])
    await run_sender(Sender(db, bot, options=FAST), lambda: db.outbox_counts()["sent"] == 4,
                     "the edit")
    text = _one_message_naming_both(fake, 131, w, other)
    assert text.endswith("<i>+1 more: AP</i>")
    [msg] = fake.messages(131)
    assert len(msg.edits) == 1  # both edit rows went out as one edit
