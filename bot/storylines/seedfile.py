"""Load shared storylines from seed files (``seeds/*.toml``).

A seed file describes one storyline in TOML::

    slug = "wang-yi-russia-2023"
    title = "Wang Yi visit to Russia"
    summary = "..."                 # seed text, in the project's own words
    keywords = ["visit", "talks"]
    dates = ["2023-09-18"]           # optional, informational
    [[entities]]
    name = "Wang Yi"
    kind = "person"                  # optional
    aliases = ["Wang", "Chinese foreign minister"]

Loaded storylines have ``id=0`` (storage assigns real ids), ``shared=True``
and their slug set. Malformed files raise :class:`bot.errors.ConfigError`
naming the file and the problem.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.models import Storyline

_KNOWN_KEYS = frozenset({"slug", "title", "summary", "keywords", "dates", "entities"})


def _strings(value: Any, what: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {what} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def load_seed_file(path: Path) -> Storyline:
    """Read one seed file into a shared :class:`Storyline`."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read seed file: {exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(doc) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    slug = doc.get("slug", path.stem)
    title = doc.get("title")
    if not isinstance(slug, str) or not slug.strip():
        raise ConfigError(f"{path}: slug must be a non-empty string")
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"{path}: title is required and must be a non-empty string")
    summary = doc.get("summary", "")
    if not isinstance(summary, str):
        raise ConfigError(f"{path}: summary must be a string")
    keywords = _strings(doc.get("keywords", []), "keywords", path)
    _strings(doc.get("dates", []), "dates", path)
    entities = doc.get("entities", [])
    if not isinstance(entities, list):
        raise ConfigError(f"{path}: entities must be an array of tables ([[entities]])")
    aliases: list[tuple[str, tuple[str, ...]]] = []
    for n, ent in enumerate(entities, 1):
        if not isinstance(ent, dict):
            raise ConfigError(f"{path}: entity {n} must be a table")
        name = ent.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: entity {n} needs a name")
        aliases.append((name.strip(), _strings(ent.get("aliases", []), f"entity {name!r} aliases",
                                               path)))
    return Storyline(
        id=0,
        title=title.strip(),
        seed_text=" ".join(summary.split()),
        aliases=tuple(aliases),
        keywords=keywords,
        shared=True,
        slug=slug.strip(),
    )


def load_seed_dir(path: Path) -> list[Storyline]:
    """Load every ``*.toml`` seed file in ``path``, sorted by file name."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: seed directory not found")
    storylines = [load_seed_file(p) for p in sorted(path.glob("*.toml"))]
    slugs = [s.slug for s in storylines]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1 and s})
    if dupes:
        raise ConfigError(f"{path}: duplicate slugs {dupes}")
    return storylines
