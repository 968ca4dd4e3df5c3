"""Seeding: propose storylines to track from a document (a news article).

A proposal is built around each prominent person or event of the document:
who, where, what action (visit, talks, summit...), when (dates mentioned),
with the aliases the document itself uses. Proposals are ranked by how much of
the document supports them. Pure: text in, proposals out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from bot.storylines.facets import read_item
from bot.storylines.knowledge import (
    country_records,
    folded_words,
    gazetteer,
    is_capital,
    is_city,
)
from bot.storylines.profile import ACTION_WORDS, extract_entities
from bot.storylines.text import (
    DEMONYM_TO_PLACE,
    PLACE_TO_DEMONYM,
    fold,
    sentences,
    tokens,
    word_list,
)


@dataclass(frozen=True, slots=True)
class ProposedEntity:
    """A key entity of a proposal with the names it goes by."""

    name: str
    kind: str
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A storyline the document suggests tracking."""

    title: str
    entities: tuple[ProposedEntity, ...]
    keywords: tuple[str, ...]
    when: tuple[str, ...]
    evidence: str
    score: float


_MONTHS = word_list(
    "january february march april may june july august september october november december"
)
_MONTH_RE = "|".join(m.capitalize() for m in _MONTHS)
_DATE_RES = (
    re.compile(rf"\b(?:between\s+)?(?:{_MONTH_RE})\s+\d{{1,2}}(?:\s*(?:-|–|and|to)\s*\d{{1,2}})?"
               rf"(?:,?\s+\d{{4}})?\b"),
    re.compile(rf"\b\d{{1,2}}(?:\s*(?:-|–)\s*\d{{1,2}})?\s+(?:{_MONTH_RE})(?:\s+\d{{4}})?\b"),
    re.compile(rf"\b(?:in|since|by|until|from)\s+(?:{_MONTH_RE})(?:\s+\d{{4}})?\b"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
)
# Nouns naming the development, preferred over verbs for a readable title.
_ACTION_NOUNS = tokens(
    "visit trip tour summit talks forum consultations meeting conference negotiations "
    "election vote trial coup attack war crisis deal merger"
)
# Verbs that put a person in motion towards a place ("arrive in Russia").
_MOTION = frozenset(tokens("visit trip travel arrive arrival tour fly head land attend go"))


def _dates(text: str) -> list[str]:
    found: list[str] = []
    for rx in _DATE_RES:
        for m in rx.finditer(text):
            d = re.sub(r"^(?:between|in|since|by|until|from)\s+", "", m.group(0).strip())
            if d not in found and not any(d in f for f in found):
                found.append(d)
    return found


def _place_name(tok: str) -> str:
    return tok.capitalize()


def _people(text: str, persons: list[tuple[str, str, list[str], int, bool]]
            ) -> list[tuple[str, list[str], int, int]]:
    """The document's people as (name, aliases, mentions, where first named), read with
    the matcher's own reading: a name read through an office ("of State Antony Blinken")
    becomes the office-holder's ("Antony Blinken", the office an alias), and a name
    that is or holds a place ("White House", a metonym for the US) is nobody's."""
    owners: dict[tuple[str, ...], str] = {}
    offices: dict[tuple[str, ...], str] = {}
    for r in read_item(text).roles:
        if r.owner is not None and len(r.owner) >= 2:
            # In the text as written (a name with accents is then not renamed).
            m = re.search(r"\b" + r"\W+".join(map(re.escape, r.owner)) + r"\b",
                          text, re.IGNORECASE)
            if m is not None:
                owners.setdefault(r.owner, text[m.start():m.end()])
                offices.setdefault(r.owner, r.text)
    places = gazetteer()
    out: list[tuple[str, list[str], int, int]] = []
    for name, _kind, aliases, count, _ in persons:
        words = folded_words(name)
        if words in places or any(
            (w,) in places and (is_capital((w,)) or not is_city((w,))) for w in words
        ):
            continue  # "White House", "Daily Beijing" (a newspaper's name read on)
        aliases = list(aliases)
        for owner, written in owners.items():
            if len(words) > len(owner) and words[-len(owner):] == owner:
                name = written
                if offices[owner] not in aliases:
                    aliases.append(offices[owner])
        at = [text.find(x) for x in (name, *aliases) if x and text.find(x) >= 0]
        out.append((name, aliases, count, min(at) if at else len(text)))
    return out


def _country(key: str) -> str:
    """How a title names a country: "China", "the United States"."""
    for rec in country_records():
        if rec.iso == key:
            return f"the {rec.name}" if rec.name.startswith("United ") else rec.name
    return ""


def _destination(sents: list[str], home: set[str]) -> str:
    """The country the person's sentences place the story in ("will travel to
    Washington": the United States), other than their own; "" if none."""
    found: Counter[str] = Counter()
    for sent in sents:
        for key in read_item(sent).located:
            if key not in home and len(key) == 2:
                found[key] += 1
    return _country(found.most_common(1)[0][0]) if found else ""


def propose_storylines(text: str, *, limit: int = 5) -> list[Proposal]:
    """Propose up to ``limit`` storylines from ``text``, best supported first.

    Each proposal follows one person (or event) with the action and place the
    document ties to them: "Wang Yi visit to Russia", "Vladimir Putin trip to
    China (Belt and Road Forum)".
    """
    if not text.strip():
        return []
    ents = extract_entities("", text, limit=30)
    persons = [e for e in ents if e[1] == "person"]
    events = [e for e in ents if e[1] == "event"]
    sents = sentences(text)
    sent_toks = [set(tokens(s)) for s in sents]
    proposals: list[Proposal] = []

    def sentences_with(forms: list[set[str]]) -> list[int]:
        return [i for i, st in enumerate(sent_toks) if any(f <= st for f in forms if f)]

    people = _people(text, persons)
    first = min((at for *_, at in people), default=0)
    for name, aliases, count, at in people:
        forms = [set(tokens(a)) for a in (name, *aliases) if tokens(a)]
        idx = sentences_with(forms)
        if not idx:
            continue
        # Places and actions co-occurring with the person, places next to a
        # motion verb counting double ("visit to China", "arrive in Russia").
        places: Counter[str] = Counter()
        actions: Counter[str] = Counter()
        own: set[str] = {t for f in forms for t in f}
        moving = False
        for i in idx:
            st = sent_toks[i]
            motion = bool(st & _MOTION)
            moving |= motion
            for tok in st:
                if tok in PLACE_TO_DEMONYM and tok not in own:
                    places[tok] += 2 if motion else 1
                if tok in ACTION_WORDS:
                    actions[tok] += 1
        # The person's own nationality is rarely where the story happens.
        home = {DEMONYM_TO_PLACE.get(fold(w), "") for a in aliases for w in a.split()}
        for h in home:
            if h in places and len(places) > 1:
                places[h] -= 2
        place = places.most_common(1)[0][0] if places and places.most_common(1)[0][1] > 0 else ""
        # Where the matcher reads the story as happening wins over words counted.
        home_keys = {gazetteer().get((h,), "") for h in home} - {""}
        dest = _destination([sents[i] for i in idx], home_keys) if moving else ""
        action = next((a for a in _ACTION_NOUNS if actions.get(a)), "")
        if dest and action not in ("visit", "trip", "tour"):
            action = "visit"  # "will travel to Washington for talks" is a visit
        if not action and moving:
            action = "visit"  # "will travel to Russia" is a visit
        if not action and actions:
            action = actions.most_common(1)[0][0]
        related_events = [
            e for e in events if any(
                set(tokens(e[0])) <= sent_toks[i] for i in idx
            )
        ]
        title = name
        if action:
            title += f" {action}"
        where = dest or _place_name(place)
        if where:
            title += f" to {where}" if action in ("visit", "trip", "tour") else f" in {where}"
        if related_events:
            title += f" ({related_events[0][0]})"
        entities = [ProposedEntity(name, "person", tuple(aliases))]
        if dest:
            country = dest.removeprefix("the ")
            demonym = PLACE_TO_DEMONYM.get(fold(country))
            entities.append(ProposedEntity(country, "place",
                                           (demonym.capitalize(),) if demonym else ()))
        elif place:
            demonym = PLACE_TO_DEMONYM.get(place)
            entities.append(
                ProposedEntity(_place_name(place), "place",
                               (demonym.capitalize(),) if demonym else ())
            )
        entities += [ProposedEntity(e[0], e[1], tuple(e[2])) for e in related_events[:2]]
        span_text = " ".join(sents[i] for i in idx)
        keywords = [action] if action else []
        keywords += [a for a, _ in actions.most_common(4) if a not in keywords]
        proposals.append(
            Proposal(
                title=title,
                entities=tuple(entities),
                keywords=tuple(keywords),
                when=tuple(_dates(span_text)),
                evidence=sents[idx[0]][:200],
                # News names its subject first: the person the lead opens with is
                # whose story it is ("Ishiba will travel ... for talks with Trump").
                score=float(len(idx) + count) + (2.0 if where else 0.0)
                + (1.0 if action else 0.0) + (2.0 if at == first else 0.0),
            )
        )
    for name, kind, aliases, count, _ in events:
        forms = [set(tokens(name))]
        idx = sentences_with(forms)
        if not idx:
            continue
        span_text = " ".join(sents[i] for i in idx)
        proposals.append(
            Proposal(
                title=name,
                entities=(ProposedEntity(name, kind, tuple(aliases)),),
                keywords=tuple(tokens(name)),
                when=tuple(_dates(span_text)),
                evidence=sents[idx[0]][:200],
                score=float(len(idx) + count),
            )
        )
    # One proposal per title, best first; ties broken by title for stable output.
    seen: set[str] = set()
    ranked: list[Proposal] = []
    for p in sorted(proposals, key=lambda p: (-p.score, p.title)):
        if fold(p.title) not in seen:
            seen.add(fold(p.title))
            ranked.append(p)
    return ranked[:limit]
