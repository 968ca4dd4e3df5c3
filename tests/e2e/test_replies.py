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
