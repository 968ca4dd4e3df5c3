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
