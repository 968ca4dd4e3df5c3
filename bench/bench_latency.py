"""Latency benchmark: from an item appearing in a feed to its alert reaching Telegram.

Runs the real ``storywatch run`` process (``python -m bot run``) with
``STORYWATCH_POLL_INTERVAL=10``, pointed at :class:`tests.support.fake_telegram.FakeTelegram`
and watching one live feed (:class:`tests.support.feed_server.FeedServer`) plus
``--background`` unchanging feeds from :mod:`bench.feedfarm` (they answer 304), all on
127.0.0.1. A chat sends ``/start`` and ``/track Wang Yi visit to Moscow`` (and presses
Track it under the preview); then
``--samples`` distinct developments of that story appear in the live feed at random
moments (gaps drawn uniformly from 2-12 s, so they land anywhere in the poll cycle).

Latency of a sample = arrival time of its alert at the fake Bot API minus the moment the
item was published. Expected: up to one poll interval of waiting for the next pass,
plus fetch, parse, match, the outbox transaction and the send. Target: p95 <= the
poll interval + 1 s (issue 18).

Run: .venv/bin/python bench/bench_latency.py       (about 4 minutes)
"""

from __future__ import annotations

import argparse
import html
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    REPO,
    TreeSample,
    descendants,
    machine,
    peak_rss_mb,
    percentile,
    table,
    timed_wait,
)
from bench.feedfarm import FarmSpec, FeedFarm
from tests.e2e.conftest import Chat
from tests.support.botconfig import write_config
from tests.support.fake_telegram import FakeTelegram
from tests.support.feed_server import FeedServer, Route, rss_document

TOKEN = "123:BENCH"
CHAT = 5001
STORY = "Wang Yi visit to Moscow"
HEADLINES = [
    "Chinese Foreign Minister Wang Yi arrives in Moscow for a visit",
    "Wang Yi and Lavrov sign energy agreement during Moscow visit",
    "Kremlin says Putin will receive Wang Yi on Thursday in Moscow",
    "Wang Yi ends Moscow visit with joint statement on grain exports",
    "Protesters gather outside embassy as Wang Yi visits Moscow",
    "Wang Yi lays wreath at Tomb of the Unknown Soldier in Moscow",
    "Moscow talks: Wang Yi raises Arctic shipping route with Russian officials",
    "Wang Yi's Moscow trip overshadowed by new sanctions from Brussels",
    "Analysts weigh what Wang Yi's visit means for Moscow's oil sales",
    "Wang Yi meets Russian business leaders at Moscow forum",
    "Wang Yi visit: Moscow and Beijing agree on new payment system",
    "State TV shows Wang Yi touring Moscow metro on second day of visit",
    "Wang Yi in Moscow calls for talks on Ukraine ceasefire",
    "Wang Yi and Russian defence minister discuss joint drills in Moscow",
    "Journalists barred from Wang Yi press conference in Moscow",
    "Wang Yi visit to Moscow extended by one day, ministry says",
    "Wang Yi thanks hosts as Moscow visit draws to a close",
    "Moscow visit: Wang Yi invites Lavrov to Beijing next spring",
    "Satellite deal signed as Wang Yi visits Moscow space agency",
    "Students in Moscow question Wang Yi at university lecture",
    "Wang Yi in Moscow: nuclear power cooperation on the agenda",
    "Wang Yi's Moscow visit sends rouble and yuan higher",
    "European diplomats watch Wang Yi visit to Moscow closely",
]


class LiveFeed:
    """The feed that grows during the run; newest item first, like real feeds."""

    path = "/live.xml"

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self.items: list[dict[str, str]] = []

    def publish(self, title: str) -> float:
        n = len(self.items) + 1
        self.items.insert(0, {
            "guid": f"live-{n}", "title": title,
            "link": f"https://news.example.test/live/{n}", "description": title,
            "pubDate": format_datetime(datetime.now(UTC), usegmt=True),
        })
        self.server.set_route(self.path, Route(body=rss_document("Live News", self.items)))
        return time.time()


def say(fake: FakeTelegram, text: str) -> str:
    before = len(fake.messages(CHAT))
    fake.user_says(CHAT, text)
    return fake.wait_reply(CHAT, before, timeout=60)


def alert_time(fake: FakeTelegram, headline: str) -> float | None:
    for m in fake.messages(CHAT):
        if headline in html.unescape(m.text):
            return m.at
    return None


def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    interval = args.interval
    with tempfile.TemporaryDirectory(prefix="sw-bench-latency-") as t, \
            FakeTelegram(TOKEN) as fake, FeedServer() as server, \
            FeedFarm(FarmSpec(feeds=max(1, args.background), slow_every=0)) as farm:
        tmp = Path(t)
        live = LiveFeed(server)
        live.publish("Markets close higher on Friday")
        urls = [server.url(live.path), *farm.urls("v", args.background)]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STORYWATCH_", "TELEGRAM_"))
               and not k.upper().endswith("_PROXY")}
        env.update({
            "TELEGRAM_BOT_TOKEN": TOKEN, "STORYWATCH_TELEGRAM_API_URL": fake.api_url,
            "STORYWATCH_DATA_DIR": str(tmp / "data"),
            # 20 developments in a few minutes: more than the default hourly bound
            # per storyline, and each one's latency is what is measured.
            "STORYWATCH_CONFIG": str(write_config(tmp, urls, log_level="WARNING",
                                                    commands_per_minute=None,
                                                    alerts_per_storyline_hour=10_000)),
            "STORYWATCH_POLL_INTERVAL": str(interval),
            "STORYWATCH_ALLOW_PRIVATE_NETWORKS": "true", "NO_PROXY": "127.0.0.1",
            "PYTHONPATH": str(REPO),
        })
        log = (tmp / "bot.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            started = timed_wait(lambda: any(m == "getUpdates" for m, _ in fake.requests), 60)
            if not started or proc.poll() is not None:
                raise RuntimeError("the bot did not start:\n" + (tmp / "bot.log").read_text())
            say(fake, "/start")
            # /track previews first; the storyline is made when the user presses Track it.
            reply = Chat(fake, CHAT).track(STORY, timeout=60)
            print(f"/track, then Track it: {reply.splitlines()[0][:80]}")
            # Primed once the live feed was polled twice (the first poll stores, no alert).
            timed_wait(lambda: len(server.requests_for(live.path)) >= 2, interval * 3)
            published: list[tuple[str, float]] = []
            for headline in HEADLINES[: args.samples]:
                time.sleep(rng.uniform(2.0, 12.0))
                published.append((headline, live.publish(headline)))
            timed_wait(lambda: all(alert_time(fake, h) for h, _ in published), interval + 20)
            tree = [proc.pid, *descendants(proc.pid)]
            cpu = sum(TreeSample.take(proc.pid).cpu.values())
            rss = peak_rss_mb(proc.pid)
            rss_tree = sum(peak_rss_mb(p) for p in tree)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(10)
            log.close()
        lat = []
        for headline, at in published:
            got = alert_time(fake, headline)
            if got is not None:
                lat.append(got - at)
        missing = len(published) - len(lat)
        print(f"bot exited with {code}; {len(lat)} of {len(published)} alerts arrived"
              f"{'' if not missing else f' ({missing} missing)'}")
        print("latencies s: " + ", ".join(f"{x:.1f}" for x in lat))
        # Each latency split in two: the wait for the pass that fetched the live feed
        # after the publication, and that fetch to the alert's arrival.
        fetched = [r.at for r in server.requests_for(live.path)]
        waits, after = [], []
        for headline, at in published:
            got = alert_time(fake, headline)
            fetch = next((t for t in fetched if t >= at), None)
            if got is not None and fetch is not None:
                waits.append(fetch - at)
                after.append(got - fetch)
        print("waiting for the fetch s: " + ", ".join(f"{x:.1f}" for x in waits))
        print("fetch to alert s: " + ", ".join(f"{x:.2f}" for x in after))
        print()
        p50, p95 = percentile(lat, 0.5), percentile(lat, 0.95)
        print(table(
            ["poll interval", "feeds watched", "samples", "p50 s", "p95 s", "max s",
             "target p95", "", "bot CPU s (whole run)", "bot peak RSS MB (proc / +children)"],
            [[f"{interval:g} s", len(urls), len(lat), p50, p95, max(lat, default=float("nan")),
              f"<= {interval + 1:g} s", "met" if p95 <= interval + 1 and not missing
              else "MISSED", cpu, f"{rss:.0f} / {rss_tree:.0f}"]]))


def main() -> None:
    p = argparse.ArgumentParser(description="latency benchmark")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--background", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    args.samples = min(args.samples, len(HEADLINES))
    print(machine())
    run(args)


if __name__ == "__main__":
    main()
