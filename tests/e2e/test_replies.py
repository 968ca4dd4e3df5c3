"""Replies to commands against the fake Bot API over real HTTP: a reply that waited for
one of the bot's own connections is not a network failure, and is not lost as one."""

from __future__ import annotations

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.delivery.ratelimit import SendLimiter
from bot.delivery.replies import Outgoing, Replier
from tests.conftest import TOKEN
from tests.support.fake_telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:telegram")


async def test_replies_that_waited_for_a_busy_connection_all_arrive(fake: FakeTelegram) -> None:
    """Three chats' replies share one connection and Telegram answers each after a
    second; with no retries for network errors, each still arrives once."""
    chats = [301, 302, 303]
    for chat in chats:
        fake.fail("sendMessage", chat_id=chat, status=200, description="", delay=1.0,
                  deliver=True)
    request = HTTPXRequest(connection_pool_size=1, pool_timeout=0.2)
    async with Bot(TOKEN, base_url=fake.api_url, request=request) as bot:
        replier = Replier(bot, SendLimiter(), network_retries=0)
        for chat in chats:
            replier.send(Outgoing(chat, f"reply to {chat}"))
        await replier.stop(grace=30)
    assert [fake.texts(c) for c in chats] == [[f"reply to {c}"] for c in chats]
    assert replier.sent == 3


async def test_a_reply_refused_in_an_unforeseen_way_does_not_strand_the_chats_queue(
    fake: FakeTelegram,
) -> None:
    """An error no branch expects (here a 409 Conflict) drops that one reply, logged;
    the chat's next reply still goes out."""
    fake.fail("sendMessage", chat_id=311, status=409,
              description="Conflict: terminated by other getUpdates request")
    async with Bot(TOKEN, base_url=fake.api_url) as bot:
        replier = Replier(bot, SendLimiter(), network_retries=0)
        replier.send(Outgoing(311, "first"))
        replier.send(Outgoing(311, "second"))
        await replier.stop(grace=30)
    assert fake.texts(311) == ["second"]
    assert replier.pending() == 0


async def test_a_reply_whose_answer_was_lost_is_sent_again_only_once(
    fake: FakeTelegram,
) -> None:
    """A reply that reached Telegram but whose answer came too late may be in the chat:
    one more try, not one per network retry (it was up to four copies)."""
    fake.fail("sendMessage", chat_id=321, status=200, description="", delay=1.0,
              deliver=True, times=-1)
    request = HTTPXRequest(read_timeout=0.3)
    async with Bot(TOKEN, base_url=fake.api_url, request=request) as bot:
        replier = Replier(bot, SendLimiter(), network_retries=3, network_pause=0.1)
        replier.send(Outgoing(321, "hello"))
        await replier.stop(grace=30)
    assert fake.texts(321) == ["hello", "hello"]
