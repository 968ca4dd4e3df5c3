"""Profiles: entities, aliases, terms and actions from a title and seed text."""

from __future__ import annotations

from bot.models import Storyline
from bot.storylines.profile import build_profile
from bot.storylines.text import capitalised_spans, stem, tokens

SEED = (
    "Chinese Foreign Minister Wang Yi will arrive in Moscow for talks. "
    "Wang will meet officials. Russian President Vladimir Putin may visit Beijing; "
    "Putin is expected at the Third Belt and Road Forum."
)


def _aliases(profile_name: str) -> tuple[str, ...]:
    prof = build_profile(Storyline(1, "Wang Yi visit to Russia", SEED))
    return next(e.aliases for e in prof.entities if e.name == profile_name)


def test_person_aliases_from_role_and_name() -> None:
    assert set(_aliases("Wang Yi")) >= {"Wang Yi", "Wang", "Chinese foreign minister"}
    assert set(_aliases("Vladimir Putin")) >= {"Vladimir Putin", "Putin", "Russian president"}


def test_events_and_actions() -> None:
    prof = build_profile(Storyline(1, "Wang Yi visit to Russia", SEED))
    names = {e.name: e.kind for e in prof.entities}
    assert names["Belt and Road Forum"] == "event"
    assert "visit" in prof.actions and "talk" in prof.actions


def test_title_terms_weigh_most() -> None:
    prof = build_profile(Storyline(1, "Wang Yi visit to Russia", SEED))
    assert prof.terms["russia"] == max(prof.terms.values())
    assert prof.terms["wang"] >= prof.terms.get("officials", 0.0)


def test_explicit_aliases_are_entities() -> None:
    st = Storyline(2, "Putin trip", aliases=(("Vladimir Putin", ("Kremlin chief",)),))
    prof = build_profile(st)
    assert prof.entities[0].name == "Vladimir Putin"
    assert ("kremlin", "chief") in prof.entities[0].forms


def test_text_normalisation() -> None:
    assert stem("Putin's".casefold()) == "putin"
    assert tokens("Russian forces in Syria's north") == ["russia", "force", "syria", "north"]
    # One word per country, whichever of its names or demonyms the text uses.
    assert tokens("Burkinabé coup") == tokens("Burkinabe coup") == ["burkinabe", "coup"]
    assert tokens("Icelandic Iceland") == ["iceland", "iceland"]
    assert tokens("Chinese China French France") == ["china", "china", "france", "france"]
    spans = [s.text for s in capitalised_spans("Yuri Ushakov, Russia's adviser, met Lavrov.")]
    assert spans == ["Yuri Ushakov", "Russia", "Lavrov"]


def test_years_in_titles_date_rather_than_topic() -> None:
    prof = build_profile(Storyline(1, "2015 Hajj stampede"))
    assert prof.terms["2015"] < prof.terms["hajj"] == prof.terms["stampede"]


def test_fold_ascii_fast_path_matches_slow_path() -> None:
    from bot.storylines.text import fold

    assert fold("Putin's PLANE") == "putin's plane"
    assert fold("Diendéré") == "diendere"


def test_fold_strips_every_combining_mark_and_keeps_other_letters() -> None:
    import sys
    import unicodedata

    from bot.storylines.text import fold

    # The definition, a character at a time, against the fast paths (no mark at
    # all, marks only in some words) on every character.
    def by_definition(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text)
        return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()

    chars = [chr(c) for c in range(0x80, sys.maxunicode + 1) if not 0xD800 <= c < 0xE000]
    for k in range(0, len(chars), 64):
        text = "a " + "".join(chars[k:k + 64]) + " é"
        assert fold(text) == by_definition(text)
    assert fold("Москве …") == "москве ..."
    assert fold("Ǆ a\u0301\u0302b") == "dz ab"
