"""``storywatch run --front-end --webhook URL``: updates posted to PTB's webhook
server (secret token checked) are answered; the front end polls no feed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import TOKEN
from tests.e2e.conftest import BotProcess, Feed, wait_until
from tests.support.botconfig import write_config
from tests.support.fake_telegram import FakeTelegram
from tests.support.ports import unused_port

SECRET = "webhook_secret-42"


def post(url: str, update: dict[str, object], secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    req = urllib.request.Request(url, json.dumps(update).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except urllib.error.URLError:
        return -1  # not listening yet


def start_update(update_id: int, chat_id: int) -> dict[str, object]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "U"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "U"},
        "text": "/start", "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    }}


def test_webhook_front_end_checks_the_secret_and_polls_nothing(
    tmp_path: Path, fake: FakeTelegram, news: Feed
) -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}/telegram"
    front = BotProcess(tmp_path, fake, write_config(tmp_path, [news.url]),
                       {"STORYWATCH_WEBHOOK_SECRET": SECRET})
    log = tmp_path / "front.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--front-end", "--webhook", url,
         "--webhook-listen", "127.0.0.1", "--webhook-port", str(port)],
        cwd=tmp_path, env=front.env(), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        fake.wait_for(lambda: any(m == "setWebhook" for m, _ in fake.requests), 60,
                      "the front end to set its webhook")
        hook = next(p for m, p in fake.requests if m == "setWebhook")
        assert hook["url"] == url and hook["secret_token"] == SECRET
        chat = 4242
        wait_until(lambda: post(url, start_update(1, 9999), "wrong") == 403, 30,
                   "the webhook server to refuse a wrong secret")
        assert post(url, start_update(2, 9998), None) == 403
        assert post(url, start_update(3, chat), SECRET) == 200
        fake.wait_for(lambda: bool(fake.messages(chat)), 30, "the reply to /start")
        assert "/track" in fake.texts(chat)[0]
        assert fake.messages(9999) == [] and fake.messages(9998) == []
        assert not any(m == "getUpdates" for m, _ in fake.requests)
        time.sleep(2)  # two poll intervals: a front end fetches no feed
        assert news.server.requests_for(news.path) == []
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        output = log.read_text(errors="replace")
        assert TOKEN not in output and SECRET not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
