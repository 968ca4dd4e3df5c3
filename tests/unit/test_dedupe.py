"""Near-duplicate collapse: one alert per development."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.storylines.dedupe import (
    Collapser,
    DedupeConfig,
    NameEvidence,
    Report,
    find_duplicate,
    find_duplicates,
    mark_spans,
    marks,
)

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


# -- rewrites across outlets collapse; distinct events never do ----------------------


def test_rewrite_with_other_verbs_collapses_on_shared_names() -> None:
    first = Report("Putin lands in Beijing for Belt and Road forum", published=T0, source="A")
    second = Report("Russia's Putin arrives in Beijing for Belt and Road summit",
                    published=T0 + timedelta(minutes=40), source="B")
    assert find_duplicate(second, [first]) is first
    assert find_duplicate(first, [second]) is second


def test_rewrite_naming_a_role_collapses() -> None:
    first = Report("Wang Yi meets Lavrov in Moscow", published=T0)
    second = Report("Chinese foreign minister Wang Yi holds talks with Lavrov in Moscow",
                    published=T0)
    assert find_duplicate(second, [first]) is first


def test_same_place_different_prefecture_is_another_event() -> None:
    first = Report("Magnitude 5.1 earthquake strikes Fukushima prefecture", published=T0)
    second = Report("Magnitude 5.1 earthquake strikes Miyagi prefecture", published=T0)
    assert find_duplicate(second, [first]) is None


def test_different_numbers_are_different_developments() -> None:
    first = Report("Floods kill 5 in northern Chile", published=T0)
    second = Report("Floods kill 12 in northern Chile", published=T0 + timedelta(hours=5))
    assert find_duplicate(second, [first]) is None


def test_one_person_in_one_place_doing_something_else_is_kept() -> None:
    # Two shared names are not enough to ignore what each report says happened.
    first = Report("Minister Okafor arrives in Galway for energy talks", published=T0)
    second = Report("Minister Okafor wins mayoral election in Galway", published=T0)
    assert find_duplicate(second, [first]) is None


def test_a_name_one_title_adds_is_detail_not_another_event() -> None:
    first = Report("Putin arrives in Beijing for Belt and Road Forum", published=T0)
    second = Report("Putin arrives in Beijing for Belt and Road Forum, meets Xi", published=T0)
    assert find_duplicate(second, [first]) is first


def test_titles_without_content_never_collapse() -> None:
    assert find_duplicate(Report("The", published=T0), [Report("The", published=T0)]) is None


# -- marks: which words of a title are names -----------------------------------------


def _marks(title: str, *context: str) -> frozenset[str]:
    return marks(title, NameEvidence([Report(title), *(Report(t) for t in context)]))


def test_marks_are_names_numbers_and_countries_not_roles_or_common_words() -> None:
    got = _marks("Russian President Putin says 3,500 troops left Kherson on Friday")
    assert got == {"russia", "putin", "3500", "kherson"}


def test_first_word_is_a_name_only_when_the_window_writes_it_as_one() -> None:
    assert "fukushima" not in _marks("Fukushima hit by strong quake")
    assert "fukushima" in _marks("Fukushima hit by strong quake",
                                 "Aftershocks felt in Fukushima overnight")
    assert "strong" not in _marks("Strong quake hits Fukushima",
                                  "A strong wind blew in the evening")


def test_title_case_headline_uses_the_window_for_names() -> None:
    title = "Magnitude 5.1 Earthquake Strikes Fukushima Prefecture"
    assert _marks(title) == {"5.1"}  # every word capitalised: case says nothing
    got = _marks(title, "Residents of Fukushima felt the earthquake in the prefecture")
    assert got == {"5.1", "fukushima"}


def test_evidence_from_summaries_separates_title_case_events() -> None:
    def quake(place: str) -> Report:
        return Report(f"Magnitude 5.1 Earthquake Strikes {place} Prefecture",
                      summary=f"The earthquake struck {place} prefecture early on Tuesday.",
                      published=T0)

    assert find_duplicate(quake("Miyagi"), [quake("Fukushima")]) is None
    assert find_duplicate(quake("Fukushima"), [quake("Fukushima")]) is not None


# -- find_duplicates: a whole poll against the window, bounded ------------------------


def test_poll_collapses_outlets_into_the_first_and_keeps_events_apart() -> None:
    poll = [
        Report("Putin lands in Beijing for Belt and Road forum", published=T0),
        Report("Magnitude 5.1 earthquake strikes Fukushima prefecture", published=T0),
        Report("Russia's Putin arrives in Beijing for Belt and Road summit", published=T0),
        Report("Magnitude 5.1 earthquake strikes Miyagi prefecture", published=T0),
        Report("Putin lands in Beijing for Belt & Road forum", published=T0),
    ]
    got = find_duplicates(poll, []).duplicate_of
    assert got == (None, None, 0, None, 0)


def test_positions_point_into_earlier_then_new() -> None:
    earlier = [Report("Wang Yi meets Lavrov in Moscow", published=T0)]
    poll = [Report("Xi and Putin sign energy agreements", published=T0),
            Report("Wang Yi meets Lavrov in Moscow.", published=T0),
            Report("Xi and Putin sign energy agreements.", published=T0)]
    assert find_duplicates(poll, earlier).duplicate_of == (None, 0, 1)


def test_only_the_newest_alerts_are_considered() -> None:
    earlier = [Report(f"Floods kill {n} in northern Chile", published=T0) for n in (3, 4, 5)]
    config = DedupeConfig(max_recent=2)
    oldest, newest = earlier[0], earlier[-1]
    assert find_duplicate(Report(oldest.title, published=T0), earlier, config) is None
    assert find_duplicate(Report(newest.title, published=T0), earlier, config) is newest


def test_work_is_bounded_by_the_cap() -> None:
    earlier = [Report(f"Storm number {i} reaches the coast", published=T0) for i in range(1000)]
    poll = [Report(f"Storm number {i} reaches the coast", published=T0) for i in range(20)]
    found = find_duplicates(poll, earlier, DedupeConfig(max_recent=50))
    assert found.scored_pairs == 20 * (50 + 20)
    assert found.checked_pairs <= found.scored_pairs


def test_a_duplicate_far_down_a_large_poll_still_finds_its_original() -> None:
    # More items than one block of the score matrix: the original is in another block.
    poll = [Report(f"Storm number {i} reaches the coast", published=T0) for i in range(600)]
    poll.append(Report("Storm number 7 reaches the coast.", published=T0))
    found = find_duplicates(poll, []).duplicate_of
    assert found[:600] == (None,) * 600
    assert found[600] == 7


def test_roles_are_not_names_in_any_form() -> None:
    got = _marks("Minister Lavrov meets Ministers of Kherson and President's aide Ushakov")
    assert got == {"lavrov", "kherson", "ushakov"}


def test_a_two_word_name_is_one_name() -> None:
    # "Wang Yi" and Moscow are two names, too few to ignore what else each says
    # (the third title shows the window that Wang and Yi are written as names).
    developments = [
        Report("Wang Yi and Lavrov sign energy agreement during Moscow visit", published=T0),
        Report("Wang Yi ends Moscow visit with joint statement on grain exports",
               published=T0 + timedelta(hours=3)),
        Report("Kremlin says Putin will receive Wang Yi on Thursday in Moscow", published=T0),
    ]
    assert find_duplicates(developments, []).duplicate_of == (None, None, None)
    spans = mark_spans("Russia's Putin meets Chinese Foreign Minister Wang Yi", NameEvidence([]))
    assert spans == ({"russia"}, {"putin"}, {"china"}, {"wang", "yi"})


def test_a_name_dense_sentence_case_title_is_not_title_case() -> None:
    assert _marks("Kremlin says Putin will receive Wang Yi on Thursday in Moscow") == {
        "putin", "wang", "yi", "moscow"}


def test_same_names_doing_something_else_are_two_developments() -> None:
    """The same people in the same place are not enough: what the titles say besides the
    names must agree (kinds of development count as one: "lands" is "arrives")."""
    drills = Report("Wang Yi and Russian defence minister discuss joint drills in Moscow",
                    published=T0)
    forum = Report("Wang Yi meets Russian business leaders at Moscow forum", published=T0)
    assert find_duplicate(drills, [forum]) is None
    invite = Report("Moscow visit: Wang Yi invites Lavrov to Beijing next spring", published=T0)
    deal = Report("Wang Yi and Lavrov sign energy agreement during Moscow visit", published=T0)
    assert find_duplicate(invite, [deal]) is None
    lands = Report("Putin lands in Beijing for Belt and Road forum", published=T0)
    arrives = Report("Russia's Putin arrives in Beijing for Belt and Road summit", published=T0)
    assert find_duplicate(arrives, [lands]) is lands
