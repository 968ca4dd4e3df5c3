"""End-to-end: what a user who tracks a storyline by its title sees in Telegram.

`/track Putin trip to China`, then a day of unrelated China news, Putin elsewhere,
and finally the trip itself reported without either word of the title ("Kremlin
chief lands in Beijing"). Only the trip is alerted, and the alert says why. The
transcript is printed (``pytest -s``) for the issue's closing note.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import BotProcess, Chat, Feed, wait_until
from tests.support.fake_telegram import FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NOISE = [
    # (title, summary): each shares one facet of the title, never two anchors.
    ("Russian President Vladimir Putin meets governors in Moscow",
     "The Kremlin said the talks covered the regional budget."),
    ("Apple unveils new iPhone with USB-C port",
     "The phone goes on sale in China, Europe and the US next week."),
    ("China economy slows in third quarter", "Growth fell to 4.9%, the statistics bureau said."),
    ("Putin says no plans to visit the Hague", "The court has issued a warrant for his arrest."),
]
TRIP = ("Kremlin chief lands in Beijing", "He was welcomed at the airport by Chinese officials.")
SENTINEL_STORY = "Mars rover landing"
SENTINEL = ("NASA confirms Mars rover landing in Jezero crater", "The rover sent its first images.")


def test_track_putin_trip_to_china_alerts_the_trip_and_nothing_else(
    bot: BotProcess, fake: FakeTelegram, news: Feed
) -> None:
    user = Chat(fake, 701)
    # Typed on a phone, without capitals: tracked as the title it means.
    tracked = user.track("putin trip to china")
    assert tracked.startswith("Tracking #1: Putin trip to China\n"), tracked
    assert "Who: Putin" in tracked and "Where: China" in tracked
    transcript = [f"> /track putin trip to china\n< {tracked}"]
    user.track(SENTINEL_STORY)
    for title, summary in [*NOISE, TRIP]:
        news.publish(title, summary)
        transcript.append(f"  [feed] {title}")
    # The sentinel is published last, in its own poll: once it is alerted, every item
    # before it has been judged.
    polled = len(news.server.requests_for(news.path))
    wait_until(lambda: len(news.server.requests_for(news.path)) > polled + 1,
               what="the noise to be polled")
    news.publish(*SENTINEL)
    transcript.append(f"  [feed] {SENTINEL[0]}")
    wait_until(lambda: any(SENTINEL[0] in t for t in user.alerts()), what="the sentinel alert")
    alerts = user.alerts()
    transcript += [f"< {a}" for a in alerts]
    print("\n" + "\n".join(transcript))
    trip = [a for a in alerts if TRIP[0] in a]
    assert len(trip) == 1
    assert 'Putin (as "Kremlin chief")' in trip[0]
    assert 'China (as "Beijing")' in trip[0]
    for title, _ in NOISE:
        assert not any(title in a for a in alerts), title
    assert len(alerts) == 2  # the trip and the sentinel
