"""Values the parse worker pickles for the bot travel as their fields and come back whole."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import pytest

from bot.models import Item
from bot.parse_worker import parse_and_read
from bot.storylines.reading import read, with_reading
from bot.wire import by_fields
from tests.support.feed_server import rss_document


def _all_fields(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]


def test_every_field_comes_back_even_those_left_out_of_comparisons() -> None:
    item = with_reading(Item("k", "Putin lands in Beijing", "Xi met him.", "https://n.test/1",
                             datetime(2023, 10, 17, tzinfo=UTC), "wire", feed_id=7))
    for back in (pickle.loads(pickle.dumps(item)), copy.deepcopy(item)):
        assert _all_fields(back) == _all_fields(item)
        assert back.reading == read(item.title, item.summary)  # compare=False: checked apart
    assert Item.__reduce__(item)[0] is Item  # travels as its fields, not dataclasses' state


def test_a_parsed_feed_with_its_facts_and_roles_survives_the_pipe() -> None:
    body = rss_document("World", [{"guid": "g", "title": "Chinese Foreign Minister Wang Yi "
                                   "arrives in Moscow", "link": "https://n.test/1"}])
    parsed = parse_and_read(body, {"content-type": "application/rss+xml"}, "https://n.test/f")
    back = pickle.loads(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
    assert _all_fields(back) == _all_fields(parsed)
    facts = back.items[0].facts
    assert facts is not None and facts == parsed.items[0].facts and facts.roles


def test_a_class_that_its_fields_cannot_rebuild_is_refused() -> None:
    @dataclass(frozen=True)
    class Checked:
        a: int
        b: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="cannot be rebuilt"):
        by_fields(Checked)
