"""End-to-end: the buttons under alerts, through the real bot and the fake Bot API.

- /track TITLE answers with a preview and Track it / Cancel (/ Follow #N instead)
  buttons; nothing is created until Track it, and only the asking chat can press it;
- every alert carries 👍 👎 🔕 Stop following; a press is answered
  (answerCallbackQuery) and the keyboard edited in place, no new message;
- a press forged from another chat (its own message, another chat's alert in the
  data) changes nothing;
- 👎 on an off-story pattern: the next item like it is not alerted in that chat,
  while another chat's storyline of the same title still gets it, and an on-story
  report still comes;
- a press after a restart works; 🔕 1 day mutes; a press on an alert of a removed
  storyline gets a clear answer.

With STORYWATCH_TRANSCRIPTS=DIR the conversation is written to DIR (conftest).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ADMIN, BotProcess, Chat, Feed, wait_until
from tests.support.fake_telegram import FakeTelegram, Sent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TITLE = "Putin trip to China"
OFF_STORY = ("Putin trip to China: Moscow souvenir shop sells commemorative mugs",
             "Souvenir shops in Moscow sell mugs with Putin and Xi ahead of the China trip.")
SIMILAR = ("Souvenir plates of Xi and Putin fill Moscow shop windows",
           "Souvenir shops in Moscow sell commemorative plates with Putin and Xi ahead of "
           "the China trip.")
EARLIER = ("Kremlin confirms Putin will travel to China in October",
           "The Russian president is expected in Beijing for the Belt and Road forum.")
TRIP = ("Putin lands in Beijing for talks with Xi",
        "The Russian president arrived for a two-day visit to China.")
TRIP_2 = ("Putin and Xi sign energy deal in Beijing",
          "The Russian president's visit to China ended with a gas agreement.")
SENTINEL_STORY = "Mars rover landing"
SENTINEL = ("NASA confirms Mars rover landing in Jezero crater", "The rover sent its first images.")


def labels(msg: Sent) -> list[str]:
    rows = (msg.markup or {}).get("inline_keyboard", [])
    return [b["text"] for row in rows for b in row]


def button(msg: Sent, label: str) -> str:
    for row in (msg.markup or {}).get("inline_keyboard", []):
        for b in row:
            if b["text"] == label:
                return str(b["callback_data"])
    raise AssertionError(f"no button {label!r} under msg {msg.message_id}: {labels(msg)}")


def press(fake: FakeTelegram, chat_id: int, msg: Sent, data: str, user_id: int) -> str:
    """Press a button and return the bot's answerCallbackQuery text."""
    qid = fake.press(chat_id, msg.message_id, data, user_id=user_id)

    def answer() -> dict[str, Any] | None:
        return next((a for a in list(fake.answered_callbacks)
                     if a.get("callback_query_id") == qid), None)

    fake.wait_for(lambda: answer() is not None, 30, f"the answer to {data}")
    found = answer()
    assert found is not None
    return str(found.get("text") or "")


def alert(fake: FakeTelegram, chat_id: int, title: str) -> Sent:
    wait_until(lambda: any(m.current.startswith("📰") and title in m.current
                           for m in fake.messages(chat_id)), what=f"the alert {title!r}")
    return next(m for m in fake.messages(chat_id)
                if m.current.startswith("📰") and title in m.current)


def track(fake: FakeTelegram, user: Chat, title: str) -> str:
    """/track TITLE: a preview, nothing created yet; Track it creates the storyline and
    the preview becomes the outcome. Returns the preview."""
    reply = user.say(f"/track {title}")
    assert reply.startswith(f"Preview of “{title}” (not tracked yet)"), reply
    msg = next(m for m in reversed(fake.messages(user.chat_id)) if m.text == reply)
    assert labels(msg)[:2] == ["Track it", "Cancel"], labels(msg)
    answer = press(fake, user.chat_id, msg, button(msg, "Track it"), user.user_id)
    assert answer.startswith("Tracking #") and answer.endswith(title), answer
    wait_until(lambda: msg.current.startswith(answer) and not labels(msg),
               what="the preview to become the outcome, its buttons gone")
    assert "Alerts come to this chat." in msg.current
    return reply


def settle(fake: FakeTelegram, news: Feed, chat_id: int) -> None:
    """Wait until everything published so far was polled and sent to ``chat_id``: a
    sentinel published in a later poll reaches the chat after all of it (one chat's
    alerts go out in the order they were queued). The chat must track SENTINEL_STORY."""
    polled = len(news.server.requests_for(news.path))
    wait_until(lambda: len(news.server.requests_for(news.path)) > polled + 1,
               what="the items to be polled")
    news.publish(*SENTINEL)
    alert(fake, chat_id, SENTINEL[0])


def test_thumbs_down_teaches_only_this_chats_storyline(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    a, b = Chat(fake, 801), Chat(fake, 802)
    news.publish(*EARLIER)  # stored before anyone tracks the story: the preview shows it
    polled = len(news.server.requests_for(news.path))
    wait_until(lambda: len(news.server.requests_for(news.path)) > polled + 1,
               what="the earlier report to be stored")
    preview = track(fake, a, TITLE)
    assert "I'll look for:" in preview
    assert "In the last 7 days it would have matched 1 item(s):" in preview
    assert EARLIER[0] in preview and "https://news.example.test/world.xml/2" in preview
    track(fake, b, TITLE)  # chat B's own storyline, of the same title
    track(fake, a, SENTINEL_STORY)
    news.publish(*OFF_STORY)
    a_alert, b_alert = alert(fake, 801, OFF_STORY[0]), alert(fake, 802, OFF_STORY[0])
    assert labels(a_alert) == ["👍", "👎", "🔕", "Stop following"]
    sent_before = len(fake.messages(801))

    # Chat B forges a press naming chat A's alert under a message of its own.
    forged = press(fake, 802, b_alert, button(a_alert, "👎"), user_id=802)
    assert "doesn't belong" in forged
    assert labels(a_alert) == ["👍", "👎", "🔕", "Stop following"]

    answer = press(fake, 801, a_alert, button(a_alert, "👎"), user_id=801)
    assert answer.startswith("Noted: not this story")
    wait_until(lambda: "✅ 👎" in labels(a_alert), what="the keyboard to show the 👎")
    assert len(fake.messages(801)) == sent_before  # answered in place, no new message

    news.publish(*SIMILAR)
    news.publish(*TRIP)
    settle(fake, news, 801)
    alert(fake, 801, TRIP[0])
    alert(fake, 802, SIMILAR[0])  # B never pressed anything: its storyline is as it was
    texts = [m.current for m in fake.messages(801)]
    assert not any(SIMILAR[0] in t for t in texts), texts
    assert a_alert.current.count("more") == 0  # nor folded into the rejected alert


def test_press_after_restart_mute_and_removed_storyline(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    a = Chat(fake, 811)
    track(fake, a, TITLE)
    track(fake, a, SENTINEL_STORY)
    news.publish(*TRIP)
    trip = alert(fake, 811, TRIP[0])

    bot.stop()
    bot.start()
    answer = press(fake, 811, trip, button(trip, "👍"), user_id=811)
    assert answer.startswith("Noted: on story")
    wait_until(lambda: "✅ 👍" in labels(trip), what="the keyboard to show the 👍")

    assert press(fake, 811, trip, button(trip, "🔕"), user_id=811).startswith("Mute #1")
    wait_until(lambda: "1 day" in labels(trip), what="the mute menu")
    assert "muted until" in press(fake, 811, trip, button(trip, "1 day"), user_id=811)
    wait_until(lambda: "🔕 muted" in labels(trip), what="the keyboard to show the mute")
    assert "🔕 muted until" in a.say("/storylines")

    # Muted: a new report of the story is not sent; the sentinel, in a later poll, is.
    news.publish(*TRIP_2)
    settle(fake, news, 811)
    assert not any(TRIP_2[0] in t for t in a.texts())
    assert "unmuted" in a.say("/mute 1 off")
    assert "now strict (threshold 0.25)" in a.say("/sensitivity 1 strict")
    listed = a.say("/storylines")
    assert "#1 Putin trip to China (this chat's, strict)" in listed and "muted" not in listed
    offer = a.say("/track Tesla recall in Germany")
    msg = next(m for m in reversed(fake.messages(811)) if m.text == offer)
    keep = button(msg, "Track it")
    cancelled = press(fake, 811, msg, button(msg, "Cancel"), user_id=811)
    assert cancelled == "Cancelled: “Tesla recall in Germany” is not tracked."
    wait_until(lambda: msg.current == cancelled and not labels(msg),
               what="the preview to be cancelled")
    # Its Track it, pressed late (a stale client, or replayed data), creates nothing.
    assert "no longer open" in press(fake, 811, msg, keep, user_id=811)
    assert "Tesla" not in a.say("/storylines")
    tried = a.say("/test Blinken visit to China")
    assert tried.startswith("Preview of “Blinken visit to China” (nothing created)")
    assert "Blinken" not in a.say("/storylines")

    assert "Removed storyline #1" in a.say("/untrack 1")
    gone = press(fake, 811, trip, button(trip, "✅ 👍"), user_id=811)
    assert "was removed" in gone
    wait_until(lambda: not labels(trip), what="the buttons of a removed storyline to go")


def test_a_press_whose_answer_telegram_refuses_still_takes_effect(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    """Telegram refuses to take the answer to a press (a query too old: the bot came
    back to a backlog of presses). The choice was recorded before the answer, so
    the rest follows: the preview becomes its outcome, the alert's keyboard shows
    the press, and the chat is not told something went wrong."""
    a = Chat(fake, 861)
    too_old = ("Bad Request: query is too old and response timeout expired or query ID "
               "is invalid")
    offer = a.say(f"/track {TITLE}")
    msg = next(m for m in reversed(fake.messages(861)) if m.text == offer)
    fake.fail("answerCallbackQuery", status=400, description=too_old)
    fake.press(861, msg.message_id, button(msg, "Track it"), user_id=861)
    wait_until(lambda: msg.current.startswith("Tracking #1") and not labels(msg),
               what="the preview to become its outcome")
    track(fake, a, SENTINEL_STORY)
    news.publish(*TRIP)
    trip = alert(fake, 861, TRIP[0])
    fake.fail("answerCallbackQuery", status=400, description=too_old)
    fake.press(861, trip.message_id, button(trip, "👍"), user_id=861)
    wait_until(lambda: "✅ 👍" in labels(trip), what="the keyboard to show the 👍")
    assert not any("went wrong" in t for t in a.texts())
    assert [r for r in fake.refused if r[0] == "answerCallbackQuery"] == [
        ("answerCallbackQuery", 0, 400, too_old)] * 2
    assert "Traceback" not in bot.output()


def test_track_previews_first_and_only_the_asking_chat_decides(
    bot: BotProcess, fake: FakeTelegram
) -> None:
    admin, a, b = Chat(fake, ADMIN), Chat(fake, 841), Chat(fake, 842)
    track(fake, admin, TITLE)
    assert "Shared #1" in admin.say("/share 1")
    offer = a.say("/track Putin visit to China")
    msg = next(m for m in reversed(fake.messages(841)) if m.text == offer)
    assert labels(msg) == ["Track it", "Cancel", "Follow #1 instead"]
    assert "Shared storyline #1 (Putin trip to China) is close" in offer
    assert "Putin visit to China" not in a.say("/storylines")  # nothing created yet
    keep = button(msg, "Track it")

    # Chat B forges chat A's Track it under a message of its own: refused, nothing made.
    welcome = b.say("/start")
    b_msg = next(m for m in fake.messages(842) if m.text == welcome)
    refused = press(fake, 842, b_msg, keep, user_id=842)
    assert "no longer open" in refused
    assert "Putin visit to China" not in b.say("/storylines")

    followed = press(fake, 841, msg, button(msg, "Follow #1 instead"), user_id=841)
    assert followed.startswith("Following #1: Putin trip to China")
    wait_until(lambda: msg.current.startswith("Following #1") and not labels(msg),
               what="the preview to show what was chosen")
    listed = a.say("/storylines")
    assert "✓ #1 Putin trip to China (shared)" in listed and "Putin visit" not in listed
    assert "no longer open" in press(fake, 841, msg, keep, user_id=841)  # decided already


def test_on_a_shared_storyline_a_followers_thumbs_down_is_their_own_exclusion(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    admin, other = Chat(fake, ADMIN), Chat(fake, 821)
    track(fake, admin, TITLE)
    assert "Shared #1" in admin.say("/share 1")
    assert "Following #1" in other.say("/subscribe 1")
    track(fake, other, SENTINEL_STORY)
    news.publish(*OFF_STORY)
    mine = alert(fake, 821, OFF_STORY[0])
    alert(fake, ADMIN, OFF_STORY[0])
    answer = press(fake, 821, mine, button(mine, "👎"), user_id=821)
    assert answer.startswith("Noted for this chat")
    wait_until(lambda: "✅ 👎" in labels(mine), what="the keyboard to show the 👎")

    news.publish(*SIMILAR)
    news.publish(*TRIP)
    settle(fake, news, 821)
    alert(fake, 821, TRIP[0])
    alert(fake, ADMIN, SIMILAR[0])  # not an admin's 👎: the shared storyline learned nothing
    assert not any(SIMILAR[0] in t for t in other.texts())


def test_an_edit_for_another_outlet_keeps_the_keyboard_as_pressed(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    a = Chat(fake, 831)
    track(fake, a, TITLE)
    news.publish("Putin lands in Beijing for Belt and Road forum",
                 "The Russian president arrived in China for the forum.", source="Agency A")
    first = alert(fake, 831, "Putin lands in Beijing")
    press(fake, 831, first, button(first, "👍"), user_id=831)
    wait_until(lambda: "✅ 👍" in labels(first), what="the 👍 to show")
    news.publish("Russia's Putin arrives in Beijing for Belt and Road summit",
                 "Putin arrived in China for the summit.", source="Agency B")
    wait_until(lambda: "+1 more" in first.current, what="the edit for the other outlet")
    assert labels(first) == ["✅ 👍", "👎", "🔕", "Stop following"]
    assert sum(m.current.startswith("📰") for m in fake.messages(831)) == 1


def test_in_a_group_only_its_administrators_steer(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    fake.chat_admins[-900] = {901}
    boss = Chat(fake, -900, user_id=901)
    track(fake, boss, TITLE)
    news.publish(*TRIP)
    msg = alert(fake, -900, TRIP[0])
    # Telegram refusing the keyboard's redraw (429) loses nothing and alarms no one.
    fake.fail("editMessageReplyMarkup", status=429, chat_id=-900,
              description="Too Many Requests: retry after 1", parameters={"retry_after": 1})
    assert press(fake, -900, msg, button(msg, "👍"), user_id=901).startswith("Noted")
    assert "✅ 👍" not in labels(msg)
    refused = press(fake, -900, msg, button(msg, "👎"), user_id=902)
    assert refused.startswith("In groups, only the group's administrators")
    assert "✅ 👎" not in labels(msg)
    assert press(fake, -900, msg, button(msg, "👎"), user_id=901).startswith("Noted")
    wait_until(lambda: "✅ 👎" in labels(msg), what="the administrator's 👎 to show")
    assert not any("went wrong" in t for t in boss.texts())
