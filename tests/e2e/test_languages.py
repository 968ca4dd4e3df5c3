"""End-to-end: storylines typed in Chinese and in Russian, followed in Telegram.

Two chats track a storyline each in its own language; the feed brings the visit in
that language with other words and endings than the title's, beside news sharing one
name. Each chat gets its visit and nothing else. The transcript is printed
(``pytest -s``) for the issue's closing note.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotProcess, Chat, Feed, wait_until
from tests.support.fake_telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ZH_TITLE = "王毅访问俄罗斯"
RU_TITLE = "Визит Путина в Китай"
NOISE = [
    ("王毅在北京会见美国国务卿布林肯", "双方同意稳定中美关系。"),  # Wang Yi, not in Russia
    ("Путин встретился с губернаторами в Москве", "Обсуждался региональный бюджет."),
]
ZH_VISIT = ("王毅抵达莫斯科开始访问俄罗斯并会见拉夫罗夫", "中国外长将举行战略安全磋商。")
RU_VISIT = ("Путин прибыл с визитом в Китай на форум", "Президента встретили в аэропорту Пекина.")
SENTINEL_STORY = "Mars rover landing"
SENTINEL = ("NASA confirms Mars rover landing in Jezero crater", "The rover sent its first images.")


def test_chinese_and_russian_storylines_alert_their_visits(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    zh = Chat(fake, 801)
    ru = Chat(fake, 802)
    transcript = [f"[chat 801] > /track {ZH_TITLE}\n< {zh.track(ZH_TITLE)}",
                  f"[chat 802] > /track {RU_TITLE}\n< {ru.track(RU_TITLE)}"]
    for chat in (zh, ru):
        chat.track(SENTINEL_STORY)
    for title, summary in [*NOISE, ZH_VISIT, RU_VISIT]:
        news.publish(title, summary)
        transcript.append(f"  [feed] {title}")
    polled = len(news.server.requests_for(news.path))
    wait_until(lambda: len(news.server.requests_for(news.path)) > polled + 1,
               what="the news to be polled")
    news.publish(*SENTINEL)
    for chat in (zh, ru):
        wait_until(lambda c=chat: any(SENTINEL[0] in t for t in c.alerts()),
                   what=f"the sentinel alert in chat {chat.chat_id}")
    for chat in (zh, ru):
        transcript += [f"[chat {chat.chat_id}] < {a}" for a in chat.alerts()]
    print("\n" + "\n".join(transcript))
    zh_alerts, ru_alerts = zh.alerts(), ru.alerts()
    assert [a for a in zh_alerts if SENTINEL[0] not in a] == [
        a for a in zh_alerts if ZH_VISIT[0] in a] and len(zh_alerts) == 2
    assert [a for a in ru_alerts if SENTINEL[0] not in a] == [
        a for a in ru_alerts if RU_VISIT[0] in a] and len(ru_alerts) == 2
