"""Seed files: loading and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.storylines.seedfile import load_seed_dir, load_seed_file

REPO = Path(__file__).resolve().parents[2]


def test_project_seed_files_load() -> None:
    storylines = load_seed_dir(REPO / "seeds")
    slugs = {s.slug for s in storylines}
    assert {"wang-yi-russia-2023", "putin-china-belt-and-road-2023"} <= slugs
    for s in storylines:
        assert s.id == 0 and s.shared and s.seed_text and s.keywords and s.aliases
    wang = next(s for s in storylines if s.slug == "wang-yi-russia-2023")
    assert ("Wang Yi", ("Wang", "Chinese foreign minister", "China's foreign minister",
                        "Chinese top diplomat")) in wang.aliases


def test_minimal_file(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text('title = "Hajj stampede"\n')
    s = load_seed_file(p)
    assert s.slug == "x" and s.title == "Hajj stampede" and s.aliases == ()


@pytest.mark.parametrize(
    "body, message",
    [
        ("title = ", "not valid TOML"),
        ('slug = "a"\n', "title is required"),
        ('title = "t"\nkeywords = "x"\n', "keywords must be a list"),
        ('title = "t"\n[[entities]]\naliases = ["a"]\n', "needs a name"),
        ('title = "t"\ncolour = 1\n', "unknown keys"),
    ],
)
def test_malformed_files(tmp_path: Path, body: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_seed_file(p)


def test_duplicate_slugs(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('slug = "s"\ntitle = "A"\n')
    (tmp_path / "b.toml").write_text('slug = "s"\ntitle = "B"\n')
    with pytest.raises(ConfigError, match="duplicate"):
        load_seed_dir(tmp_path)
