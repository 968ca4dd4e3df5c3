"""Feedback that teaches a storyline (bot.storylines.feedback): pure logic, and with
the real matcher through its review hook."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from bot.models import Item, Storyline
from bot.storylines.feedback import (
    DEFAULT_FEEDBACK,
    Example,
    FeedbackConfig,
    Steer,
    Steering,
    adjust_score,
    core_words,
    similarity,
    words,
)
from bot.storylines.matcher import Assessment, Matcher, MatcherConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORY = Storyline(id=1, title="Putin trip to China")
TWIN = Storyline(id=2, title="Putin trip to China", owner=99)  # another chat's, same title
OFF = ("Putin trip to China: Moscow souvenir shop sells commemorative mugs",
       "Souvenir shops in Moscow sell mugs with Putin and Xi ahead of the China trip.")
LIKE_OFF = ("Souvenir plates of Xi and Putin fill Moscow shop windows",
            "Souvenir shops in Moscow sell commemorative plates with Putin and Xi ahead of "
            "the China trip.")
ON = ("Putin lands in Beijing for talks with Xi",
      "The Russian president arrived for a two-day visit to China.")


def idf(_: str) -> float:
    return 1.0


def item(key: str, text: tuple[str, str], hours: float = 0) -> Item:
    return Item(key=key, title=text[0], summary=text[1], link=None,
                published=T0 + timedelta(hours=hours), source="x")


def steered_matcher(steering: Steering) -> Matcher:
    m = Matcher()
    m.observe([item(f"n{i}", (f"Markets close higher on day {i}", "Stocks rose in Paris."), i)
               for i in range(30)])
    m.review = partial(steering.review, m, m.config.threshold)
    return m


def text(t: tuple[str, str]) -> str:
    return f"{t[0]} {t[1]}"


# -- pure parts ------------------------------------------------------------------


def test_similarity_is_a_cosine_of_weighted_word_sets() -> None:
    a = frozenset({"moscow", "souvenir", "mug"})
    assert similarity(a, a, idf) == pytest.approx(1.0)
    assert similarity(a, frozenset({"beijing"}), idf) == 0.0
    assert similarity(a, frozenset(), idf) == 0.0
    # A rare shared word counts more than a common one.
    rare = {"souvenir": 5.0}
    weighted = similarity(a, frozenset({"souvenir", "x"}), lambda t: rare.get(t, 1.0))
    assert weighted > similarity(a, frozenset({"moscow", "x"}), lambda t: rare.get(t, 1.0))


def test_the_titles_words_are_never_compared() -> None:
    core = core_words(STORY)
    assert {"putin", "china"} <= core
    # An item sharing only the title's words with a rejected one is untouched.
    rejected = words("Putin trip to China: governors meet in Moscow", core)
    other = words("Putin trip to China begins in Beijing", core)
    assert adjust_score(0.8, other, [rejected], [], idf) == 0.8


def test_penalty_is_bounded_and_needs_resemblance() -> None:
    bag = frozenset({"souvenir", "mug", "moscow"})
    cfg = FeedbackConfig(weight=10.0, max_penalty=0.6, floor=0.3)
    assert adjust_score(1.0, bag, [bag], [], idf, cfg) == pytest.approx(0.4)  # at most 60% off
    far = frozenset({"souvenir", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"})
    assert similarity(bag, far, idf) < 0.3
    assert adjust_score(1.0, bag, [far], [], idf, cfg) == 1.0  # under the floor: nothing


def test_an_accepted_item_offsets_the_penalty() -> None:
    bag = frozenset({"souvenir", "mug", "moscow"})
    alone = adjust_score(1.0, bag, [bag], [], idf)
    helped = adjust_score(1.0, bag, [bag], [frozenset({"souvenir", "mug"})], idf)
    assert helped > alone


def test_steer_keeps_the_latest_press_and_a_bounded_number() -> None:
    s = Steer()
    s.add("down", "a", limit=2)
    s.add("up", "a", limit=2)  # a changed mind
    assert s.negatives == [] and s.positives == ["a"]
    for t in "bcd":
        s.add("down", t, limit=2)
    assert s.negatives == ["c", "d"]


def test_the_bar_rises_above_rejected_scores_within_bounds() -> None:
    cfg = FeedbackConfig(raise_bar=0.1, miss_cost=2.0)
    s = Steer()
    s.add("down", "x", 50, score=0.24)
    assert s.bar(0.20, cfg) == pytest.approx(0.24, abs=1e-4)
    s.add("down", "y", 50, score=0.9)  # far above: the bar never goes past 0.30
    assert s.bar(0.20, cfg) <= 0.30 + 1e-9
    s.add("up", "z", 50, score=0.22)  # an accepted item under the bar costs two rejected
    assert s.bar(0.20, cfg) == 0.20
    assert Steer().bar(0.20, cfg) == 0.20


# -- with the matcher ----------------------------------------------------------------


def test_one_thumbs_down_stops_items_like_it_and_nothing_else() -> None:
    steering = Steering()
    m = steered_matcher(steering)
    first = m.assess([item("off", OFF, 40)], [STORY, TWIN])
    assert all(a.matched for a in first)
    steering.add(Example(STORY.id, "down", text(OFF)))
    like = {a.storyline_id: a for a in m.assess([item("like", LIKE_OFF, 41)], [STORY, TWIN])}
    assert not like[STORY.id].matched
    assert like[TWIN.id].matched  # the same title in another chat is not taught
    on = m.assess([item("on", ON, 42)], [STORY])
    assert on[0].matched  # one 👎 never mutes the storyline


def test_the_fast_match_path_is_reviewed_too() -> None:
    steering = Steering([Example(STORY.id, "down", text(OFF))])
    m = steered_matcher(steering)
    found = m.match([item("like", LIKE_OFF, 41), item("on", ON, 42)], [STORY])
    assert [x.item_key for x in found] == ["on"]


class FakeScorer:
    """Assessments given by hand; counts the full rescoring a broad storyline asks for."""

    def __init__(self, pairs: Sequence[Assessment]) -> None:
        self.pairs = list(pairs)
        self.rescored: list[list[int]] = []

    def idf(self, tok: str) -> float:
        return 1.0

    def score(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        self.rescored.append([s.id for s in storylines])
        ids = {s.id for s in storylines}
        return [a for a in self.pairs if a.storyline_id in ids]


def test_sensitivity_moves_the_threshold_and_only_within_the_facets() -> None:
    a = Storyline(id=1, title="Blinken visit to China")
    b = Storyline(id=2, title="Yellen visit to China")
    c = Storyline(id=3, title="Lula visit to China")
    it = item("i", ("Blinken in Beijing", ""))
    pairs = [Assessment("i", 1, 0.22, True, ""), Assessment("i", 2, 0.17, False, ""),
             Assessment("i", 3, 0.17, False, "", facets_ok=False)]
    steering = Steering(thresholds={1: 0.25, 2: 0.15, 3: 0.15})
    scorer = FakeScorer(pairs)
    every = steering.review(scorer, 0.20, [it], [a, b, c], pairs, True)
    assert [x.matched for x in every] == [False, True, False]  # strict, broad, facets unmet
    # The fast path holds only matches: the broad storylines are scored again in full.
    fast = steering.review(scorer, 0.20, [it], [a, b, c], [pairs[0]], False)
    assert [x.storyline_id for x in fast] == [2]
    assert scorer.rescored == [[2, 3]]


def test_a_storylines_own_threshold_is_applied_in_the_scan_with_no_second_one() -> None:
    # Facets off and a high default threshold: these single-word items fall between a
    # broad storyline's own threshold and the matcher's.
    cfg = MatcherConfig(facets=False, threshold=0.5)
    batch = [item("putin", ("Putin attends concert in Moscow", "The event marked the city "
                            "day, with fireworks and speeches by officials.")),
             item("trip", ("Trip advisers warn of summer crowds", "Travel agencies in Paris "
                           "expect record bookings for the season.")),
             item("none", ("Russian president attends concert", "The event marked the city "
                           "day in Moscow with fireworks and music."))]

    def fresh(steering: Steering) -> Matcher:
        m = Matcher(cfg)
        m.observe([item(f"n{i}", (f"Markets close higher on day {i}", "Stocks rose."), i)
                   for i in range(30)])
        steering.install(m, cfg.threshold)
        return m

    def no_second_scan(*_: object) -> list[Assessment]:
        raise AssertionError("the batch was scored again")

    broad = Steering(thresholds={STORY.id: 0.3})
    fast_matcher = fresh(broad)
    fast_matcher.score = no_second_scan  # type: ignore[method-assign]
    fast = [x.item_key for x in fast_matcher.match(batch, [STORY])]
    every = [a for a in fresh(broad).assess(batch, [STORY]) if a.matched]
    assert fast == [a.item_key for a in every] == ["putin"]
    assert all(0.3 <= a.score < 0.5 for a in every)  # under the matcher's own threshold
    assert fresh(Steering()).match(batch, [STORY]) == []
    # Installing no sensitivity leaves the matcher's threshold to every storyline.
    assert fresh(Steering()).bars == {} and fresh(broad).bars == {STORY.id: 0.3}


def test_an_unsteered_batch_is_left_as_it_is() -> None:
    pairs = [Assessment("i", 1, 0.5, True, "why")]
    assert Steering().review(FakeScorer(pairs), 0.2, [item("i", ON)], [STORY], pairs,
                             False) is pairs
    assert not Steering()


def test_a_chats_own_thumbs_down_excludes_it_alone() -> None:
    shared = Storyline(id=5, title="Putin trip to China", shared=True)
    steering = Steering([Example(5, "down", text(OFF), chat_id=77),
                         Example(5, "up", text(OFF), chat_id=78)])  # a chat's 👍: nothing
    assert steering.has_exclusions(5) and not steering.has_exclusions(1)
    like, on = item("like", LIKE_OFF), item("on", ON)
    assert steering.excluded_chats(shared, like, 1.0, 0.20, idf) == {77}
    assert steering.excluded_chats(shared, on, 1.0, 0.20, idf) == set()
    assert steering.steer(5) is None  # the storyline itself learned nothing


def test_defaults_are_bounded() -> None:
    assert 0 < DEFAULT_FEEDBACK.max_penalty < 1
    assert DEFAULT_FEEDBACK.raise_bar <= 0.1
