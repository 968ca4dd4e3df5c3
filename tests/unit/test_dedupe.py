"""Near-duplicate collapse: one alert per development."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.storylines.dedupe import Collapser, Report, find_duplicate

T0 = datetime(2023, 10, 17, 8, tzinfo=UTC)


def test_same_development_from_two_outlets_collapses() -> None:
    first = Report("Putin arrives in Beijing for Belt and Road Forum", published=T0, source="A")
    second = Report("Putin arrives in Beijing for the Belt & Road forum", published=T0, source="B")
    assert find_duplicate(second, [first]) is first


def test_reordered_headline_collapses() -> None:
    first = Report("Putin lands in Beijing ahead of forum", published=T0)
    second = Report("In Beijing ahead of forum, Putin lands", published=T0 + timedelta(hours=1))
    assert find_duplicate(second, [first]) is first


def test_different_development_is_kept() -> None:
    first = Report("Putin arrives in Beijing for Belt and Road Forum", published=T0)
    second = Report("Xi and Putin sign energy agreements", published=T0 + timedelta(days=1))
    assert find_duplicate(second, [first]) is None


def test_outside_window_is_kept() -> None:
    first = Report("Putin arrives in Beijing for Belt and Road Forum", published=T0)
    later = Report(first.title, published=T0 + timedelta(days=9))
    assert find_duplicate(later, [first]) is None


def test_collapser_remembers_per_storyline() -> None:
    c = Collapser()
    r = Report("Wang Yi meets Lavrov in Moscow", published=T0)
    assert c.check(1, r) is None
    assert c.check(1, Report("Wang Yi meets Lavrov in Moscow.", published=T0)) is r
    assert c.check(2, Report("Wang Yi meets Lavrov in Moscow", published=T0)) is None
