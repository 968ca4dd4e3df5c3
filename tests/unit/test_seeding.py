"""Seeding: proposals from a document."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.storylines.seeding import propose_storylines

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"

DOC = (
    "Chinese Foreign Minister Wang Yi will travel to Russia between September 18 and 21 "
    "for security consultations. Wang will meet Sergei Lavrov. "
    "Russian President Vladimir Putin plans a visit to China in October to attend the "
    "Belt and Road Forum. Putin expects to meet Xi Jinping."
)


def test_proposals_have_entities_aliases_and_dates() -> None:
    props = propose_storylines(DOC)
    titles = [p.title for p in props]
    wang = next(p for p in props if p.title.startswith("Wang Yi"))
    assert "Russia" in wang.title
    assert "Chinese foreign minister" in wang.entities[0].aliases
    assert any("September 18" in w for w in wang.when)
    assert any(t.startswith("Vladimir Putin") and "China" in t for t in titles)


def test_empty_and_limit() -> None:
    assert propose_storylines("") == []
    assert len(propose_storylines(DOC, limit=1)) == 1


def test_shared_seed_article() -> None:
    path = SHARED / "seeds" / "wang-yi-russia-2023.txt"
    if not path.exists():
        pytest.skip(f"shared seed article not found at {path}")
    titles = [p.title for p in propose_storylines(path.read_text(encoding="utf-8"))]
    assert any(t.startswith("Wang Yi") and "Russia" in t for t in titles[:3])
    assert any("Putin" in t and "China" in t and "Belt and Road" in t for t in titles[:3])


@pytest.mark.parametrize(("lead", "title", "alias"), [
    # The person the lead opens with, not the one they travel to meet; a capital
    # reached by a motion verb is its country.
    ("Japanese Prime Minister Shigeru Ishiba will travel to Washington next week for "
     "talks with President Donald Trump on tariffs, officials said.",
     "Shigeru Ishiba visit to the United States", "Japanese prime minister"),
    # A name read through an office is the office-holder's, the office an alias.
    ("US Secretary of State Antony Blinken will travel to Beijing this weekend, the first "
     "visit by a top US diplomat in five years, the State Department said.",
     "Antony Blinken visit to China", "US Secretary of State"),
    # A place named like a person ("the White House said") is nobody.
    ("Indian Prime Minister Narendra Modi will address a joint session of the US Congress "
     "during his state visit to Washington in June, the White House said.",
     "Narendra Modi visit to the United States", "Indian prime minister"),
])
def test_the_lead_s_subject_and_where_they_go(lead: str, title: str, alias: str) -> None:
    best = propose_storylines(lead, limit=1)[0]
    assert best.title == title
    assert alias in best.entities[0].aliases
    assert all(e.name != "White House" for p in propose_storylines(lead) for e in p.entities)
