"""An item's reading (tokens and facts for the matcher): its facts read where the item
is made, in the parse worker, or by the matcher itself, with the same result."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime

from bot.models import Item, Storyline
from bot.parse_worker import parse_and_read
from bot.parsing.feeds import parse_feed
from bot.storylines.facets import _toks, read_item
from bot.storylines.matcher import Matcher
from bot.storylines.reading import read, reading_of, with_facts, with_reading
from bot.storylines.text import tokens, tokens_of
from tests.support.feed_server import rss_document

T0 = datetime(2023, 10, 1, tzinfo=UTC)
PUTIN = Storyline(1, "Putin trip to China", "Russian President Vladimir Putin travels to Beijing.")
ITEMS = [
    Item("a", "Russian president's plane lands in Beijing", "Vladimir Putin met Xi.", None,
         T0, "wire"),
    Item("b", "Storm brings heavy rain to the coast", "Floods… in the south", None, T0, "wire"),
    Item("c", "Oil prices fall on weak demand", "Brent drops 2%", None, T0, "wire"),
]


def test_a_reading_is_the_matchers_tokens_and_facts() -> None:
    item = ITEMS[0]
    r = read(item.title, item.summary)
    assert r.tokens == tuple(tokens(f"{item.title} {item.summary}"))
    assert r.facts == read_item(f"{item.title}. {item.summary}")
    assert reading_of(item) == r
    assert reading_of(with_reading(item)) == r
    assert reading_of(with_facts(item)) == r
    assert reading_of(with_reading(with_facts(item))) == r


def test_a_reading_is_never_part_of_an_items_identity() -> None:
    item = ITEMS[1]
    carried = with_reading(with_facts(item))
    assert carried == item and hash(carried) == hash(item)
    assert "reading" not in repr(carried) and "facts" not in repr(carried)


def test_the_matcher_decides_the_same_with_carried_readings() -> None:
    plain, carried, facts = Matcher(), Matcher(), Matcher()
    found_plain = plain.match(ITEMS, [PUTIN])
    found_carried = carried.match([with_reading(i) for i in ITEMS], [PUTIN])
    found_facts = facts.match([with_facts(i) for i in ITEMS], [PUTIN])
    assert found_plain == found_carried == found_facts
    assert [m.item_key for m in found_plain] == ["a"]
    assert plain.export_state() == carried.export_state() == facts.export_state()


def test_the_matcher_uses_the_reading_an_item_carries() -> None:
    # A reading of other words: the matcher scores what the item carries, not its
    # text (proof that the parse worker's reading is not done again).
    item = ITEMS[2]
    disguised = Item(item.key, item.title, item.summary, None, T0, "wire",
                     reading=read(ITEMS[0].title, ITEMS[0].summary))
    assert [m.item_key for m in Matcher().match([disguised], [PUTIN])] == ["c"]
    assert Matcher().match([item], [PUTIN]) == []


def test_the_facts_an_item_carries_are_used_and_its_tokens_are_their_words() -> None:
    # The parse worker sends facts alone: the bot keeps them (not read again) and
    # takes the tokens from their words, not from a second pass over the text.
    oil, beijing = ITEMS[2], ITEMS[0]
    carried = with_facts(beijing).facts
    assert carried is not None
    r = reading_of(replace(oil, facts=carried))
    assert r.facts is carried
    assert r.tokens == read(beijing.title, beijing.summary).tokens
    assert r.tokens != read(oil.title, oil.summary).tokens


# Texts whose words a careless split would read apart from ``tokens``: possessives,
# "U.S.", an accent written as a combining mark, a ligature, a fraction, digits.
ODD_TEXTS = [
    "Putin’s aides, the 2023 forum and 42 visits",
    "The U.S. and the U.K.: U.S.-based firms; the u.s. dollar; PUTIN'S envoy",
    "Diende\u0301re\u0301 and Zu\u0308rich: the \ufb01nance of x\u00b2 and \u00bd of it",
    "O’Neill's it’s don't players' rock'n'roll 1990's",
    "Floods… in the south — “heavy” rain",
]


def test_one_tokenisation_the_tokens_of_a_text_are_those_of_its_facts_words() -> None:
    for text in ODD_TEXTS:
        title, summary = text.split(" ", 1)
        r = read(title, summary)
        assert r.tokens == tuple(tokens(f"{title} {summary}")), text
        assert list(r.tokens) == tokens_of(r.facts.words), text
    # An accent written as a combining mark reads as the letter it makes.
    assert tokens("Diende\u0301re\u0301 in Zu\u0308rich") == tokens("Diendéré in Zürich") == [
        "diendere", "zurich"]
    assert tokens("the \ufb01nance of x\u00b2") == ["finance", "x2"]
    assert read_item("Talks in Zu\u0308rich").words == read_item("Talks in Zürich").words
    assert read_item("Talks in Zu\u0308rich").places == read_item("Talks in Zürich").places
    # "U.S." is one word for the places it names, and no token, as before.
    assert read_item("The U.S. envoy").words == ("the", "u.s.", "envoy")
    assert tokens("The U.S. envoy") == ["envoy"]


def test_chinese_and_cyrillic_tokens_are_read_from_the_text() -> None:
    # Segmented and stemmed apart (``languages``): their facts' words are other forms.
    item = Item("z", "Путин прибыл в Пекин", "Визит в Китай", None, T0, "wire")
    assert reading_of(with_facts(item)).tokens == tuple(tokens(f"{item.title} {item.summary}"))


def test_the_parse_worker_sends_items_read_and_picklable() -> None:
    body = rss_document("World", [
        {"guid": f"g{n}", "title": t.title, "description": t.summary,
         "link": f"https://n.test/{n}"} for n, t in enumerate(ITEMS)])
    parsed = parse_and_read(body, {"content-type": "application/rss+xml"}, "https://n.test/f")
    plain = parse_feed(body, {"content-type": "application/rss+xml"}, "https://n.test/f")
    assert parsed.items == plain.items
    back = pickle.loads(pickle.dumps(parsed))
    # Facts alone: the tokens are read in the bot's process (bot.storylines.reading).
    assert all(i.reading is None for i in back.items)
    assert [i.facts for i in back.items] == [read(i.title, i.summary).facts
                                             for i in plain.items]
    assert [reading_of(i) for i in back.items] == [read(i.title, i.summary)
                                                   for i in plain.items]
    assert all(i.reading is None and i.facts is None for i in plain.items)


def test_a_word_read_again_is_the_same_string_even_through_the_pool() -> None:
    # Each word one string: the pickle from the parse worker then carries it once per
    # feed, not once per use (half the bytes and the bot's memory for a feed's items).
    facts = read_item("Trade talks resume. Trade talks stall")
    assert facts.words[0] == facts.words[3] and facts.words[0] is facts.words[3]
    body = rss_document("World", [
        {"guid": f"g{n}", "title": f"Trade talks {n}", "link": f"https://n.test/{n}"}
        for n in range(2)])
    parsed = parse_and_read(body, {"content-type": "application/rss+xml"}, "https://n.test/f")
    a, b = (i.facts for i in pickle.loads(pickle.dumps(parsed)).items if i.facts is not None)
    assert a.words[0] == "trade" and a.words[0] is b.words[0]


def test_words_are_read_with_their_spans_case_and_place_in_the_sentence() -> None:
    # What the split-based reading (issue 18) must keep: a possessive dropped from the
    # word but kept in its span, "U.S." as one word even against the next, a word
    # after a sentence's end or at the very start not counted as written with a capital.
    text = '"Biden meets Xi." The U.S.Army and Putin’s aides'
    facts = read_item(text)
    assert facts.words == ("biden", "meets", "xi", "the", "u.s.", "army", "and", "putin",
                           "aides")
    assert facts.capitalised == {"xi", "u.s.", "army", "putin"}
    assert facts.lower == {"meets", "and", "aides"}
    assert [tuple(t) for t in _toks("Putin’s U.S.Army")] == [
        ("Putin", "putin", 0, 7), ("U.S.", "u.s.", 8, 12), ("Army", "army", 12, 16)]
    assert tokens("Putin’s aides, the 2023 forum and 42 visits") == [
        "putin", "aide", "2023", "forum", "visit"]
