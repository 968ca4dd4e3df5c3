"""Print a transcript of a scripted Telegram session with the real bot.

    .venv/bin/python -m tests.e2e.transcript

Starts the fake Bot API and a feed server on 127.0.0.1 and ``storywatch run``
as a subprocess in a temporary directory, then plays a short session (a user
and an admin; a news item appearing; a duplicate from a second source; a
restart) and prints what was said and what Telegram received, in order.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tests.e2e.conftest import ADMIN, TOKEN, BotProcess, Chat, Feed, wait_until, write_config
from tests.support.fake_telegram import FakeTelegram, Sent
from tests.support.feed_server import FeedServer


def _show(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, FakeTelegram(TOKEN) as fake, \
            FeedServer() as feeds:
        tmp_path = Path(tmp)
        news = Feed(feeds, "/world.xml", "World News")
        news.publish("Markets close higher on Friday")
        wire = Feed(feeds, "/wire.xml", "Wire Service")
        wire.publish("Weather: sunny weekend ahead")
        bot = BotProcess(tmp_path, fake, write_config(tmp_path, [news.url]), {})
        out: list[str] = []
        seen: dict[int, int] = {}

        def drain(chat: Chat, who: str) -> None:
            msgs = fake.messages(chat.chat_id)
            for m in msgs[seen.get(chat.chat_id, 0):]:
                kind = "alert" if m.text.startswith("📰") else "bot"
                out.append(f"  ← {kind} to {who}:\n{_show(m.text)}")
            seen[chat.chat_id] = len(msgs)

        def say(chat: Chat, who: str, text: str, reply_to: str | None = None) -> None:
            drain(chat, who)
            quoted = f'  (as a reply to: "{reply_to[:60]}…")' if reply_to else ""
            out.append(f"→ {who}: {text}{quoted}")
            if text.startswith("/track ") and reply_to is None:
                outcome = chat.track(text.removeprefix("/track "))  # the preview, then Track it
                drain(chat, who)
                out.append(f"→ {who} presses Track it\n  ✎ the preview, edited:\n{_show(outcome)}")
            else:
                chat.say(text, reply_to_text=reply_to)
                drain(chat, who)

        try:
            bot.start()
            wait_until(lambda: len(feeds.requests_for("/world.xml")) >= 2, what="priming")
            alice, admin = Chat(fake, 5001), Chat(fake, ADMIN)
            out.append(f"[bot started; setMyCommands: "
                       f"{', '.join('/' + c['command'] for c in fake.commands)}]")
            say(alice, "alice", "/start")
            say(alice, "alice", "/track Wang Yi visit to Moscow")
            say(alice, "alice", "/addfeed " + wire.url)
            say(admin, "admin", "/start")
            say(admin, "admin", "/addfeed " + wire.url)
            say(admin, "admin", "/addfeed http://127.0.0.1:9/nothing-listens-here.xml")
            say(admin, "admin", "/storylines")
            wait_until(lambda: len(feeds.requests_for("/wire.xml")) >= 2, what="wire primed")
            headline = "Chinese Foreign Minister Wang Yi arrives in Moscow for a visit"
            out.append(f"[feed World News publishes: {headline}]")
            news.publish(headline, "Wang Yi will meet Sergei Lavrov & discuss <trade>.")
            wait_until(lambda: any(t.startswith("📰") for t in alice.texts()), what="alert")
            drain(alice, "alice")
            out.append("[feed Wire Service publishes the same news]")
            wire.publish("Chinese foreign minister Wang Yi arrives in Moscow for visit")
            # The /track preview was edited too (into "Tracking #1"): only alerts count.
            def alerts() -> list[Sent]:
                return [m for m in fake.messages(alice.chat_id) if m.text.startswith("📰")]

            wait_until(lambda: any(m.edits for m in alerts()), 30,
                       what="the alert to be edited")
            for m in alerts():
                if m.edits:
                    out.append(f"  ✎ alert edited in place for alice:\n{_show(m.current)}")
            out.append("[SIGTERM; the bot exits with code "
                       f"{bot.stop()}; restarted]")
            bot.start()
            say(alice, "alice", "/status")
            say(alice, "alice", "/frobnicate")
            say(alice, "alice", "/untrack")
            say(alice, "alice", "/track", reply_to=(
                "Japanese Prime Minister Shigeru Ishiba will travel to Washington next week "
                "for talks with President Donald Trump on tariffs, officials said."))
            code = bot.stop()
            out.append(f"[SIGTERM; exit code {code}]")
            leaked = TOKEN in bot.output() or re.search(r"bot\d+:[A-Za-z]", bot.output())
            out.append(f"[token in logs: {'YES' if leaked else 'no'}]")
        finally:
            bot.close()
        print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
