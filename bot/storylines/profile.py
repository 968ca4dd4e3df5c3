"""Storyline profiles: what a storyline is about, derived once from its title and seeds.

A :class:`Profile` holds the storyline's named entities (people, places,
organisations, events) with their aliases, weighted terms, key phrases and the
action it follows (visit, talks, summit...). The matcher scores items against
profiles; nothing here looks at the item stream.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType

from bot.models import Storyline
from bot.storylines.text import (
    DEMONYM_TO_PLACE,
    PLACE_TO_DEMONYM,
    STOPWORDS,
    TITLE_WORDS,
    Span,
    capitalised_spans,
    fold,
    is_year,
    tokens,
    word_list,
)

# Words that mark what kind of development a storyline follows. Generic news
# vocabulary: they make explanations readable and add a small bonus.
ACTION_WORDS: frozenset[str] = frozenset(
    tokens(
        """
        visit trip tour talks summit meeting meet forum conference consultations negotiations
        election vote referendum strike attack bombing war ceasefire truce invasion coup protest
        trial verdict sentence arrest investigation inquiry hearing merger acquisition deal
        takeover launch release recall ban sanctions crisis outbreak earthquake flood fire
        wildfire hurricane typhoon storm stampede crash scandal resignation wedding funeral
        finale season lawsuit settlement agreement treaty accord
        """
    )
)

# Name words that usually mark an organisation or an event rather than a person.
_ORG_WORDS = frozenset(
    tokens(
        """
        ministry council party bank company corporation corp inc ltd group agency union
        university committee commission court parliament congress senate army police
        association organisation organization federation fund institute department office
        """
    )
)
_EVENT_WORDS = frozenset(
    tokens(
        """
        forum summit games cup championship olympics war crisis conference festival expo
        election season awards conflict insurgency intervention
        """
    )
)

# How much each source of text counts. The title is what the user asked for,
# so it dominates; seed text widens the vocabulary at lower weight.
TITLE_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.0
ALIAS_WEIGHT = 0.8
SEED_WEIGHT = 0.6
# A year in a title says when, not what: items rarely repeat it ("2015 Hajj
# stampede" is reported as "Hajj stampede"), and at full weight its high IDF
# would take a large share of the title's mass from the words that do matter.
YEAR_WEIGHT = 0.2
MAX_SEED_TERMS = 40
MAX_ENTITIES = 12


@dataclass(frozen=True, slots=True)
class Entity:
    """A named thing the storyline is about, with every name we accept for it.

    ``forms`` are the token sequences (as :func:`tokens` makes them) that count
    as a mention; ``aliases`` are their readable spellings, canonical first.
    """

    name: str
    kind: str  # "person" | "place" | "org" | "event" | "other"
    aliases: tuple[str, ...]
    forms: tuple[tuple[str, ...], ...]
    weight: float


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything the matcher needs to know about one storyline."""

    storyline_id: int
    title: str
    terms: Mapping[str, float]
    entities: tuple[Entity, ...]
    phrases: tuple[tuple[str, ...], ...]
    actions: tuple[str, ...]

    def entity_tokens(self) -> frozenset[str]:
        """Tokens that belong to some entity form."""
        return frozenset(t for e in self.entities for f in e.forms for t in f)


_ORDINALS = frozenset(
    word_list("first second third fourth fifth sixth seventh eighth ninth tenth")
)
# Capitalised by convention, not names.
_NOT_NAMES = frozenset(
    word_list(
    """
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday
    """)
)


def _split_role(span: Span) -> tuple[list[str], list[str]]:
    """Split "Chinese Foreign Minister Wang Yi" into role words and name words."""
    ws = [w for w in span.words if fold(w) not in _NOT_NAMES]
    while ws and (fold(ws[0]) in _ORDINALS or fold(ws[0])[:-2].isdigit()):
        ws.pop(0)
    role: list[str] = []
    while ws and (fold(ws[0]) in TITLE_WORDS or fold(ws[0]) in DEMONYM_TO_PLACE):
        role.append(ws.pop(0))
    return role, ws


def _kind(role: list[str], name: list[str]) -> str:
    toks = set(tokens(" ".join(name)))
    if toks & _EVENT_WORDS:
        return "event"
    if toks & _ORG_WORDS:
        return "org"
    if any(fold(w) in TITLE_WORDS for w in role):
        return "person"
    if toks and all(t in PLACE_TO_DEMONYM for t in toks):
        return "place"
    if len(name) in (2, 3) and all(w[:1].isupper() and not w.isupper() for w in name):
        return "person"
    return "other"


@dataclass
class _Draft:
    name: str
    kind: str
    aliases: list[str]
    count: int
    in_title: bool


def _single_word_aliases(name: list[str], standalone: Counter[str]) -> list[str]:
    """Which single words of a person's name stand for the whole person.

    Prefer words the source text itself uses alone ("Wang" for "Wang Yi");
    fall back to the family name as Western text writes it (the last word).
    """
    out = [w for w in name if len(w) >= 3 and standalone[fold(w)] > 0]
    if not out and len(name[-1]) >= 4:
        out = [name[-1]]
    return out


def extract_entities(
    title: str, seed_text: str = "", *, limit: int = MAX_ENTITIES
) -> list[tuple[str, str, list[str], int, bool]]:
    """Named entities of a title and seed text: (name, kind, aliases, mentions, in_title).

    Aliases come from the text's own structure: a role in front of a name
    ("Russian President Vladimir Putin") gives the role alias ("Russian
    president"), the bare name and the single name the text uses alone.
    """
    drafts: dict[str, _Draft] = {}
    all_spans: list[tuple[Span, bool]] = [(s, True) for s in capitalised_spans(title)]
    all_spans += [(s, False) for s in capitalised_spans(seed_text)]
    # Single capitalised words used on their own anywhere ("Wang", "Putin").
    standalone: Counter[str] = Counter(
        fold(s.words[0]) for s, _ in all_spans if len(s.words) == 1
    )
    for span, in_title in all_spans:
        role, name = _split_role(span)
        if not name:
            # A bare place/demonym ("Russian", "China") is still a place entity;
            # a bare role ("President") is not an entity.
            places = [DEMONYM_TO_PLACE.get(fold(w), fold(w)) for w in role]
            places = [p for p in places if p in PLACE_TO_DEMONYM]
            for place in places:
                key = place
                d = drafts.get(key)
                if d is None:
                    drafts[key] = _Draft(place.title(), "place", [], 1, in_title)
                else:
                    d.count += 1
                    d.in_title |= in_title
            continue
        if len(name) == 1 and span.sentence_start and fold(name[0]) in STOPWORDS:
            continue
        name_text = " ".join(name)
        key = fold(name_text)
        kind = _kind(role, name)
        aliases: list[str] = []
        if kind == "person":
            aliases += _single_word_aliases(name, standalone)
            titles = [w.lower() for w in role if fold(w) in TITLE_WORDS]
            demonyms = [w for w in role if fold(w) in DEMONYM_TO_PLACE]
            # A bare "president" names nobody; "Russian president" does.
            if titles and demonyms:
                aliases.append(" ".join([demonyms[0], *titles]))
        # Demonym prefixes on non-persons are also places worth tracking.
        for w in role:
            place = DEMONYM_TO_PLACE.get(fold(w), fold(w))
            if place in PLACE_TO_DEMONYM:
                d = drafts.get(place)
                if d is None:
                    drafts[place] = _Draft(place.title(), "place", [], 1, in_title)
                else:
                    d.count += 1
        d = drafts.get(key)
        if d is None:
            # A single word that is the tail of a known longer name is that entity.
            merged = False
            if len(name) == 1:
                for other in drafts.values():
                    if other.kind == "person" and fold(name[0]) in fold(other.name).split():
                        other.count += 1
                        other.in_title |= in_title
                        merged = True
                        break
            if not merged:
                drafts[key] = _Draft(name_text, kind, aliases, 1, in_title)
        else:
            d.count += 1
            d.in_title |= in_title
            for a in aliases:
                if a not in d.aliases:
                    d.aliases.append(a)
            if d.kind == "other" and kind != "other":
                d.kind = kind
    # Entities whose name is a single word already inside a person's name fold into it.
    ranked = sorted(drafts.values(), key=lambda d: (not d.in_title, -d.count, d.name))
    return [(d.name, d.kind, d.aliases, d.count, d.in_title) for d in ranked[:limit]]


def _forms(name: str, aliases: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    seen: list[tuple[str, ...]] = []
    for text in (name, *aliases):
        form = tuple(tokens(text))
        if form and form not in seen:
            seen.append(form)
    return tuple(seen)


def _entity(
    name: str, kind: str, aliases: Iterable[str], weight: float
) -> Entity:
    alias_list = [a for a in dict.fromkeys(aliases) if fold(a) != fold(name)]
    return Entity(name, kind, (name, *alias_list), _forms(name, alias_list), weight)


def _bigrams(toks: list[str]) -> list[tuple[str, ...]]:
    return [(a, b) for a, b in pairwise(toks) if a != b]


def build_profile(storyline: Storyline) -> Profile:
    """Derive the profile of ``storyline`` from its title, seed text, aliases and keywords."""
    terms: dict[str, float] = {}

    def add(tok: str, weight: float) -> None:
        terms[tok] = max(terms.get(tok, 0.0), weight)

    title_toks = tokens(storyline.title)
    for tok in title_toks:
        add(tok, YEAR_WEIGHT if is_year(tok) else TITLE_WEIGHT)
    for kw in storyline.keywords:
        for tok in tokens(kw):
            add(tok, YEAR_WEIGHT if is_year(tok) else KEYWORD_WEIGHT)

    entities: list[Entity] = []
    seen_names: set[str] = set()
    # Aliases given explicitly (seed files) come first and are trusted.
    for name, aliases in storyline.aliases:
        e = _entity(name, "other", aliases, 1.0)
        entities.append(e)
        seen_names.add(fold(name))
        for form in e.forms:
            for tok in form:
                add(tok, ALIAS_WEIGHT if tok not in TITLE_WORDS else 0.2)

    for name, kind, found_aliases, count, in_title in extract_entities(
        storyline.title, storyline.seed_text
    ):
        if fold(name) in seen_names:
            continue
        seen_names.add(fold(name))
        weight = 1.0 if in_title else min(1.0, 0.4 + 0.2 * count)
        e = _entity(name, kind, found_aliases, weight)
        entities.append(e)
        for tok in tokens(name):
            add(tok, (TITLE_WEIGHT if in_title else SEED_WEIGHT) * (1.0 if count > 1 or in_title
                                                                    else 0.7))

    # Seed text: frequent content words, sub-linear in their count.
    seed_counts = Counter(tokens(storyline.seed_text))
    if seed_counts:
        top = max(seed_counts.values())
        for tok, n in seed_counts.most_common(MAX_SEED_TERMS):
            add(tok, SEED_WEIGHT * (1.0 + math.log(n)) / (1.0 + math.log(top)) if top > 1
                else SEED_WEIGHT)

    phrases = list(dict.fromkeys(_bigrams(title_toks)))
    for e in entities:
        for form in e.forms:
            if len(form) > 1 and form not in phrases:
                phrases.append(form)
    for kw in storyline.keywords:
        form = tuple(tokens(kw))
        if len(form) > 1 and form not in phrases:
            phrases.append(form)

    all_toks = set(title_toks) | set(seed_counts) | {
        t for kw in storyline.keywords for t in tokens(kw)
    }
    actions = tuple(sorted(all_toks & ACTION_WORDS))
    return Profile(
        storyline_id=storyline.id,
        title=storyline.title,
        terms=MappingProxyType(terms),
        entities=tuple(entities),
        phrases=tuple(phrases),
        actions=actions,
    )
