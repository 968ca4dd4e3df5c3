"""The preview /track and /test show (bot.storylines.preview, bot.telegram.steering)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.models import Item, Storyline
from bot.storylines.preview import SHOWN, Preview, close_storylines, preview
from bot.telegram.steering import preview_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORY = Storyline(id=0, title="Putin trip to China")


def item(n: int, title: str, summary: str = "") -> Item:
    return Item(key=f"k{n}", title=title, summary=summary, link=f"https://news.test/{n}",
                published=T0 + timedelta(hours=n), source="News")


def stream(on_story: int) -> list[Item]:
    noise = [item(i, f"Markets close higher on day {i}", "Stocks rose in Paris.")
             for i in range(40)]
    hits = [item(100 + i, f"Putin lands in Beijing for talks, day {i}",
                 "The Russian president arrived in China.") for i in range(on_story)]
    return noise + hits


def test_preview_lists_what_it_would_have_matched_newest_first() -> None:
    found = preview(STORY, stream(3))
    assert [i.key for i in found.hits] == ["k102", "k101", "k100"]
    assert not found.broad
    text = preview_text(STORY, found)
    assert "I'll look for:" in text
    assert "would have matched 3 item(s):" in text and "https://news.test/102" in text
    assert "looks broad" not in text and "and " not in text.split("item(s):")[1]


def test_more_than_five_say_and_n_more_and_over_twenty_a_day_is_broad() -> None:
    many = preview(STORY, stream(160), days=7)
    text = preview_text(STORY, many)
    assert f"and {160 - SHOWN} more" in text
    assert many.broad and "this looks broad" in text.lower()
    assert text.count("• ") == SHOWN


def test_nothing_found_and_close_shared_storylines() -> None:
    shared = [Storyline(id=4, title="Putin's trip to China", shared=True),
              Storyline(id=5, title="Wang Yi visit to Russia", shared=True)]
    assert [s.id for s in close_storylines(STORY, shared)] == [4]
    found = Preview((), 0.0, (shared[0],))
    text = preview_text(STORY, found)
    assert "would have matched nothing stored" in text
    assert "Shared storyline #4" in text


def test_a_title_typed_in_lower_case_is_read_with_the_names_the_items_know() -> None:
    typed = Storyline(id=0, title="putin trip to china")
    found = preview(typed, stream(3))
    assert [i.key for i in found.hits] == ["k102", "k101", "k100"]
    text = preview_text(typed, found)
    assert "Who: Putin" in text and "Where: China" in text
    assert found.title == "Putin trip to China"
    # "state" is a name only until the items write it in lower case.
    modi = Storyline(id=0, title="modi state visit to the us")
    assert preview(modi, stream(0)).title == "Modi State visit to the US"
    told = [*stream(0), item(200, "Plans for a state visit", "The state dinner is set.")]
    assert preview(modi, told).title == "Modi state visit to the US"
