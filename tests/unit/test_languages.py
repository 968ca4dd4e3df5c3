"""Storylines typed in Chinese or Russian match news in that language; English is unchanged.

The labelled files in tests/fixtures/languages/ were written for these tests (their
builders sit beside them); the F1 floors sit a little under what the matcher measured
on them when they were written (docs/matching.md, "Other languages").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.evaluation import evaluate, load_benchmark
from bot.models import Item, Storyline
from bot.storylines import languages
from bot.storylines.facets import RoleBook, judge, parse_title, read_item
from bot.storylines.matcher import Matcher
from bot.storylines.text import tokens

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "languages"
T0 = datetime(2023, 9, 1, tzinfo=UTC)


def _matches(title: str, texts: list[str]) -> list[bool]:
    """Each text as a new item, in order, against a storyline of ``title``."""
    m = Matcher()
    story = Storyline(1, title, "")
    items = [Item(f"i{n}", t, "", None, T0 + timedelta(hours=n), "test")
             for n, t in enumerate(texts)]
    hits = {h.item_key for h in m.match(items, [story])}
    return [i.key in hits for i in items]


def test_chinese_title_matches_an_unsegmented_chinese_headline() -> None:
    assert tokens("王毅访问俄罗斯并会见拉夫罗夫") == ["王毅", "访问", "俄罗斯", "会见", "拉夫罗夫"]
    assert _matches("王毅访问俄罗斯", [
        "王毅访问俄罗斯并会见拉夫罗夫",  # the visit
        "王毅在北京会见美国国务卿布林肯",  # Wang Yi, not in Russia
        "普京访问吉尔吉斯斯坦",  # another visit, another person
    ]) == [True, False, False]


def test_chinese_title_anchors_are_the_names_the_tagger_finds() -> None:
    q = parse_title("王毅访问俄罗斯")
    assert {(f.kind, f.label) for f in q.facets} == {
        ("who", "王毅"), ("who", "俄罗斯"), ("word", "访问")}
    # Two anchors: one of them and a shared word is other news.
    assert not judge(q, read_item("王毅访问日本"), RoleBook()).ok
    assert judge(q, read_item("外交部长王毅抵达俄罗斯"), RoleBook()).ok


def test_russian_endings_are_stemmed_alike() -> None:
    assert tokens("в Москву") == tokens("в Москве") == tokens("Москва")
    assert languages.cyrillic_word("Путиным", "ru") == languages.cyrillic_word("Путина", "ru")
    assert _matches("Визит Путина в Китай", [
        "Путин прибыл с визитом в Китай",
        "Путин встретился с губернаторами в Москве",  # Putin, not in China
        "Путин выступил на форуме в Китае",  # another ending of both names
    ]) == [True, False, True]


def test_russian_function_words_are_no_facets() -> None:
    q = parse_title("Визит Ван И в Москву")
    labels = {f.label.casefold() for f in q.facets}
    assert "в" not in labels and "и" not in labels
    assert {"ван", "москву"} <= labels  # labels as typed, not stems


def test_cyrillic_language_defaults_to_russian_unless_sure() -> None:
    # A short Russian headline looks like several languages; Russian is kept.
    assert languages.cyrillic_language("Визит Путина в Китай") == "ru"
    assert languages.cyrillic_language("Зеленський прибув до Києва з робочим візитом") == "uk"
    # Ukrainian has no Snowball stemmer: folded, not cut by Russian rules.
    assert languages.cyrillic_word("Києва", "uk") == "києва"


@pytest.mark.parametrize("text", [
    "Putin’s trip to China — “a new era”",  # typographic punctuation
    "Diendéré arrested in Ouagadougou",  # accented Latin letters
    "Wang Yi visits Moscow",
])
def test_english_text_never_takes_the_other_path(text: str) -> None:
    assert not languages.needs(text)


def test_mixed_chinese_and_latin_words() -> None:
    toks = tokens("APEC峰会在旧金山举行")
    assert "apec" in toks and "峰会" in toks and "旧金山" in toks


@pytest.mark.parametrize(("name", "floor"), [("lang-ru.json", 0.85), ("lang-zh.json", 0.75)])
def test_language_benchmarks(name: str, floor: float) -> None:
    result = evaluate(load_benchmark(FIXTURES / name))
    assert result.f1 >= floor, (name, result.f1, result.precision, result.recall)


def test_the_written_out_russian_stopword_stems_are_snowballs() -> None:
    stems = {languages.cyrillic_word(w, "ru") for w in languages.RU_STOPWORDS}
    assert stems - languages.RU_STOPWORDS == languages.RU_STOPWORD_STEMS
    assert (
        languages.ZH_STOPWORDS | languages.RU_STOPWORDS | frozenset(stems)) == languages.STOPWORDS
