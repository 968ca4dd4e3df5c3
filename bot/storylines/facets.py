"""A storyline's title read as the query it is: who, where, and what kind of development.

``/track Putin trip to China`` asks for news where Putin (by name, or as "the
Kremlin chief"), China (or "Beijing", "Chinese") and a trip come together; one of
them alone is other news. This module turns a title into :class:`Facet` s, reads
an item once into :class:`ItemFacts` (the places, offices and words it mentions)
and says which facets an item satisfies, and whether that is enough
(:func:`judge`).

People are also named by their office ("the Treasury secretary"); which office a
person holds is learned from the text the bot reads (:class:`RoleBook`): from
seeds, from appositions ("Treasury Secretary Janet Yellen", "Wang Yi, China's top
diplomat") and from items that name the person and an office together.

Pure: text in, facts out; the role book is the only state, and the matcher owns it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import accumulate, chain, compress, count
from operator import itemgetter
from sys import intern
from typing import Literal, NamedTuple, overload

from bot.storylines import languages
from bot.storylines.folding import composed
from bot.storylines.knowledge import (
    ABBREVIATIONS,
    DEVELOPMENT_KINDS,
    METONYMS,
    ROLE_PHRASES,
    ROLE_QUALIFIERS_OTHER,
    PlaceKey,
    Words,
    development_kinds,
    folded_words,
    gazetteer,
    is_capital,
    is_city,
    large_cities,
    names_someone_alone,
    office_aliases,
    region_members,
    roles_compatible,
)
from bot.storylines.text import (
    MAX_TERM_LENGTH,
    STOPWORDS,
    fold,
    fold_written,
    is_year,
    split_words,
    unpossessive,
    word_list,
)
from bot.wire import by_fields

Role = tuple[PlaceKey | None, str]  # (whose office, which office)

# How a title wrote a word, for ``parse_title``'s ``is_name``: with a capital, in a Title
# Case title, or typed all in lower case.
Casing = Literal["capital", "title", "lower"]
CASINGS: tuple[Casing, ...] = ("capital", "title", "lower")

_FIRST = itemgetter(0)  # a word's first letter
_SENTENCE_END = re.compile(r"[.!?:;\n|]")
# The first word of each office phrase, with the longest phrase it starts: most words
# start none, and are passed over with one look-up.
_ROLE_STARTS: dict[str, int] = {}
for _phrase in ROLE_PHRASES:
    _ROLE_STARTS[_phrase[0]] = max(_ROLE_STARTS.get(_phrase[0], 0), len(_phrase))


@lru_cache(maxsize=1)
def _place_starts() -> dict[str, int]:
    """Like ``_ROLE_STARTS``, for the gazetteer's place names."""
    out: dict[str, int] = {}
    for words in gazetteer():
        out[words[0]] = max(out.get(words[0], 0), len(words))
    return out
# Words around names that are not part of them.
_FILLER = frozenset({"the", "of", "and", "in", "to", "for", "a", "an", "on", "at", "with"})
_NEVER_NAMES = frozenset(word_list(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday"
))
_CONNECTORS = frozenset({"and", "of", "de", "al", "bin", "von", "van"})
# A name spelt otherwise: rapidfuzz ratio at least this, on words at least this long.
FUZZY_CUTOFF = 88.0
FUZZY_MIN_LENGTH = 5
# Evidence a learned office needs before it names a person on its own.
ROLE_EVIDENCE = 2
# Words that put what follows them somewhere: "talks in Vienna", "visit to China".
_LOCATIVE_BEFORE = frozenset(word_list(
    "in at to into inside near outside across around visit visits visited visiting "
    "tour tours toured touring reach reaches reached"
))
# "a China visit", "his Moscow trip", "a US state visit".
_LOCATIVE_AFTER = frozenset(word_list("visit visits trip trips tour"))
_VISIT_QUALIFIERS = frozenset(word_list("state official working first maiden historic"))
# "leaves for Moscow".
_DEPARTS = frozenset(word_list(
    "leave leaves left leaving depart departs departed departing head heads headed "
    "heading bound fly flies flew flying set sets"
))
# "the war in Ukraine", "the crisis in Syria": the subject, not where the news is from.
_SUBJECT_BEFORE_IN = frozenset(
    DEVELOPMENT_KINDS["conflict"] | DEVELOPMENT_KINDS["crisis"]
    | frozenset(word_list("peace invasion situation"))
)
# A city this large named on its own says where ("Bengaluru meeting"); a smaller one, or a
# capital (also the name of a government: "Beijing says"), needs a word that places it.
BARE_CITY_POPULATION = 1_000_000


class _Tok(NamedTuple):
    text: str  # as written, possessive dropped
    low: str  # folded
    start: int
    end: int

    @property
    def capitalised(self) -> bool:
        return self.text[:1].isupper()


# Builds a _Tok from a 4-tuple in C (the NamedTuple's own constructor is a Python call).
_new_tok: Callable[[tuple[str, str, int, int]], _Tok] = partial(tuple.__new__, _Tok)


class _Toks(Sequence[_Tok]):
    """A text's words as four columns: as written, folded, where each starts and ends.

    An item has about 130 words and a first pass reads 50,000 items (issue 18), but
    the reading looks at a few words one by one (those that may start a place or an
    office) and at the rest only through whole columns, in C. So no tuple is made per
    word: a :class:`_Tok` is made when a word is looked at (an index or a slice).
    """

    __slots__ = ("_ends", "_parts", "_starts", "lows", "texts")

    def __init__(self, texts: list[str], lows: list[str], starts: list[int] | None = None,
                 ends: list[int] | None = None, *, parts: list[str] | None = None) -> None:
        """Words with their spans, or with ``parts`` (gap, word, ..., gap: what
        ``text.split_words`` gives) to find the spans in when first asked."""
        self.texts, self.lows = texts, lows
        self._starts, self._ends, self._parts = starts, ends, parts

    # Spans are asked for only around a place or an office, which most items lack
    # (four in five of the bench farm's): found from the parts then, all at once.
    @property
    def starts(self) -> list[int]:
        return self._starts if self._starts is not None else self._locate()[0]

    @property
    def ends(self) -> list[int]:
        return self._ends if self._ends is not None else self._locate()[1]

    def _locate(self) -> tuple[list[int], list[int]]:
        offsets = list(accumulate(map(len, self._parts or ())))
        self._starts, self._ends = offsets[0:-1:2], offsets[1::2]
        return self._starts, self._ends

    @overload
    def __getitem__(self, k: int) -> _Tok: ...
    @overload
    def __getitem__(self, k: slice) -> list[_Tok]: ...
    def __getitem__(self, k: int | slice) -> _Tok | list[_Tok]:
        if isinstance(k, slice):
            return list(map(_new_tok, zip(self.texts[k], self.lows[k], self.starts[k],
                                          self.ends[k], strict=True)))
        return _new_tok((self.texts[k], self.lows[k], self.starts[k], self.ends[k]))

    def __len__(self) -> int:
        return len(self.lows)

    def __iter__(self) -> Iterator[_Tok]:
        return map(_new_tok, zip(self.texts, self.lows, self.starts, self.ends, strict=True))


def _toks(text: str) -> _Toks:
    return _toks_and_gaps(text)[0]


def _toks_and_gaps(text: str) -> tuple[_Toks, list[str]]:
    """``text``'s tokens, and the text around them: before each, then after the last.

    Items are read by the thousand, about 130 words each (issue 18): the Latin-script
    case is built with C-level splits and maps, not a Python loop over the words.
    """
    if languages.needs(text):
        # Chinese is segmented, Cyrillic words stemmed: their forms then match across
        # word boundaries and endings ("Москву", "Москве").
        found = list(languages.words(text, _latin))
        texts, lows = [w for w, _, _, _ in found], [intern(low) for _, low, _, _ in found]
        starts, ends = [s for _, _, s, _ in found], [e for _, _, _, e in found]
        gaps = [text[a:b] for a, b in zip([0, *ends], [*starts, len(text)], strict=True)]
        return _Toks(texts, lows, starts, ends), gaps
    parts, written = split_words(text)  # parts: gap, word, gap, word, ..., gap
    # One string per word, however often it is written: an item's facts keep its
    # words three times over (words, word set, lower or capitalised), and a feed's
    # readings are pickled from the parse worker to the bot, where the pickle's
    # memo then sends and builds each word once (half the bytes and memory).
    lows = list(map(intern, fold_written(text, written)))
    return _Toks(written, lows, parts=parts), parts[0::2]


def _latin(word: str) -> str:
    return fold(unpossessive(word))


@by_fields
@dataclass(frozen=True, slots=True)
class RoleMention:
    """An office named in text; ``owner`` is the name it is apposed to, if any."""

    place: PlaceKey | None
    office: str
    owner: Words | None
    text: str


@by_fields
@dataclass(frozen=True, slots=True)
class ItemFacts:
    """What an item mentions, read once for every storyline."""

    words: Words
    joined: str  # " w w w ", for name look-ups
    places: frozenset[PlaceKey]
    place_text: tuple[tuple[PlaceKey, str], ...]  # each place with how it was written
    roles: tuple[RoleMention, ...]
    word_set: frozenset[str]
    capitalised: frozenset[str]  # words written with a capital letter mid-sentence
    lower: frozenset[str]  # words written in lower case
    located: frozenset[PlaceKey] = frozenset()  # where the item says things happen
    cities: frozenset[PlaceKey] = frozenset()  # countries of the cities it names


def _abbreviation(toks: _Toks, k: int, any_case: bool) -> PlaceKey | None:
    """"US", "UK" as written; typed in lower case, only after "the" ("the us"), since
    "us" alone is a pronoun."""
    key = ABBREVIATIONS.get(toks.texts[k])
    if key is None and any_case and k > 0 and toks.lows[k - 1] == "the":
        key = ABBREVIATIONS.get(toks.texts[k].upper())
    return key


def _find_places(
    toks: _Toks, *, any_case: bool = False
) -> list[tuple[int, int, PlaceKey]]:
    """Places named in ``toks``: written with a capital, or in any case (``any_case``,
    for a title typed all in lower case)."""
    table = gazetteer()
    starts = _place_starts()
    out: list[tuple[int, int, PlaceKey]] = []
    # Only words that may begin a place are visited, in order (as in _find_roles).
    # Items are read by the thousand: the common case costs one or two look-ups a word.
    if any_case:
        candidates = [k for k, low in enumerate(toks.lows)
                      if low in starts or _abbreviation(toks, k, any_case) is not None]
    else:  # an item: the words that may start a place are found by C-level maps
        candidates = sorted(chain(
            compress(count(), map(ABBREVIATIONS.__contains__, toks.texts)),
            (k for k in compress(count(), map(starts.__contains__, toks.lows))
             if toks.texts[k][:1].isupper() and toks.texts[k] not in ABBREVIATIONS)))
    i = 0
    for k in candidates:
        if k < i:
            continue  # inside the place just found
        i = k
        abbr = _abbreviation(toks, i, any_case)
        if abbr is not None:
            out.append((i, i + 1, abbr))
            i += 1
            continue
        hit = None
        longest = starts.get(toks.lows[i], 0) \
            if any_case or toks.texts[i][:1].isupper() else 0
        if longest:
            for n in range(min(longest, len(toks) - i), 0, -1):
                key = table.get(tuple(toks.lows[i : i + n]))
                if key is not None:
                    hit = (i, i + n, key)
                    break
        if hit is not None and _first_name(toks, hit):
            i = hit[1]
        elif hit is not None:
            out.append(hit)
            i = hit[1]
    return out


def _first_name(toks: _Toks, hit: tuple[int, int, PlaceKey]) -> bool:
    """"Vladimir Putin", "Sydney Opera House": a (non-capital) city's name followed by
    another capitalised word that is no place is part of a name, not a place."""
    s, e, _ = hit
    words = tuple(toks.lows[s:e])
    if e >= len(toks) or not toks[e].capitalised or words not in large_cities() \
            or is_capital(words) or not is_city(words):
        return False
    nxt = toks[e].low
    return nxt not in STOPWORDS and _place_starts().get(nxt, 0) == 0


def _name_after(toks: _Toks, j: int, place_at: set[int]) -> Words | None:
    """The capitalised run starting at ``j`` (a person's name after an office)."""
    run: list[str] = []
    while j < len(toks) and toks[j].capitalised and j not in place_at \
            and toks[j].low not in STOPWORDS:
        run.append(toks[j].low)
        j += 1
    return tuple(run) or None


def _name_before(text: str, toks: _Toks, i: int) -> Words | None:
    """``Wang Yi, China's top diplomat``: the name a comma apposes the office to."""
    if i == 0 or text[toks[i - 1].end : toks[i].start].strip() != ",":
        return None
    run: list[str] = []
    j = i - 1
    while j >= 0 and toks[j].capitalised and toks[j].low not in STOPWORDS:
        run.insert(0, toks[j].low)
        if j == 0 or text[toks[j - 1].end : toks[j].start].strip():
            break
        j -= 1
    return tuple(run) or None


def _named_as(toks: _Toks, i: int) -> Words | None:
    """``names Wang Yi as foreign minister``: the office is that name's."""
    if i < 2 or toks[i - 1].low != "as":
        return None
    run: list[str] = []
    j = i - 2
    while j >= 0 and toks[j].capitalised and toks[j].low not in STOPWORDS:
        run.insert(0, toks[j].low)
        j -= 1
    return tuple(run) or None


def _office_at(toks: _Toks, i: int) -> tuple[int, str] | None:
    """The longest office phrase starting at ``i``: (its length in words, the office)."""
    longest = _ROLE_STARTS.get(toks.lows[i], 0)
    for n in range(min(longest, len(toks) - i), 0, -1):
        office = ROLE_PHRASES.get(tuple(toks.lows[i : i + n]))
        if office is not None:
            return n, office
    return None


def _split_office(
    toks: _Toks, i: int, places: Sequence[tuple[int, int, PlaceKey]]
) -> tuple[int, str, PlaceKey] | None:
    """An office written around its place ("top US diplomat", "chief Chinese
    negotiator"): (words spanned, the office, the place), or None."""
    for s, e, key in places:
        if s != i + 1:
            continue
        for n in range(min(_ROLE_STARTS.get(toks.lows[i], 0), len(toks) - e + 1), 1, -1):
            office = ROLE_PHRASES.get((toks.lows[i], *toks.lows[e:e + n - 1]))
            if office is not None:
                return e - i + n - 1, office, key
    return None


def _find_roles(
    text: str, toks: _Toks, places: Sequence[tuple[int, int, PlaceKey]]
) -> list[RoleMention]:
    # Most words start no office: only the words that may are visited, in order.
    candidates = list(compress(count(), map(_ROLE_STARTS.__contains__, toks.lows)))
    if not candidates:
        return []
    ends = {e: (s, k) for s, e, k in places}
    place_at = {i for s, e, _ in places for i in range(s, e)}
    out: list[RoleMention] = []
    i = 0
    for k in candidates:
        if k < i:
            continue  # inside the office just read
        i = k
        hit = _office_at(toks, i)
        split = None if hit is not None else _split_office(toks, i, places)
        if split is not None:
            # "top US diplomat": the place inside the office says whose it is.
            span, office, key = split
            owner = _name_after(toks, i + span, place_at)
            out.append(RoleMention(key, office, owner,
                                   " ".join(toks.texts[i:i + span])))
            i += span
            continue
        if hit is None:
            continue
        n, office = hit
        start = i
        # "Kremlin chief": the seat of power says whose office it is.
        place = METONYMS.get((toks[i].low,))
        j = i - 1
        if j >= 0 and toks[j].low in ROLE_QUALIFIERS_OTHER:
            i += n
            continue  # a vice president is not the president
        if place is None and j >= 0 and j + 1 in ends:
            place = ends[j + 1][1]
            start = ends[j + 1][0]
        elif place is None and j >= 1 and toks[j].low in {"s", "top", "senior"} \
                and j in ends:
            place = ends[j][1]
            start = ends[j][0]
        owner = (_name_after(toks, i + n, place_at) or _name_before(text, toks, start)
                 or _named_as(toks, start))
        out.append(RoleMention(place, office, owner, " ".join(toks.texts[start:i + n])))
        i += n
    return out


def read_item(text: str) -> ItemFacts:
    """Read an item's text once: its words, places and offices.

    Composed first (``folding.composed``), as ``text.tokens`` reads: the facts' words
    are then the words of the item's tokens (``reading``)."""
    text = composed(text)
    toks, gaps = _toks_and_gaps(text)
    places = _find_places(toks)
    roles = _find_roles(text, toks, places)
    words = tuple(toks.lows)
    written = toks.texts
    # Capitalised mid-sentence: the first word and sentence starts say nothing. Each
    # item has about 130 words (issue 18): capitals and lower case are found by C-level
    # maps, and only the capitalised words' gaps are searched for a sentence's end.
    capital = compress(count(1), map(str.isupper, map(_FIRST, written[1:])))
    caps = [words[k] for k in capital if _mid_sentence(gaps[k])]
    lower = compress(words, map(str.islower, written))
    seen: dict[PlaceKey, str] = {}
    for s, e, key in places:
        seen.setdefault(key, " ".join(toks.texts[s:e]))
    located, cities = _sites(text, toks, places)
    return ItemFacts(
        words=words,
        joined=" " + " ".join(words) + " ",
        places=frozenset(seen),
        place_text=tuple(seen.items()),
        roles=tuple(roles),
        word_set=frozenset(words),
        capitalised=frozenset(caps),
        lower=frozenset(lower),
        located=located,
        cities=cities,
    )


# The text between two words is mostly one of a few strings (" ", ", ", ". "): each
# is searched for a sentence's end once, not once per word of every item. Bounded in
# entries; a gap is rarely more than a few characters.
@lru_cache(maxsize=1024)
def _mid_sentence(gap: str) -> bool:
    return not _SENTENCE_END.search(gap)


def _same_sentence(text: str, first: _Tok, second: _Tok) -> bool:
    return not _SENTENCE_END.search(text, first.end, second.start)


def _sites(
    text: str, toks: _Toks, places: Sequence[tuple[int, int, PlaceKey]]
) -> tuple[frozenset[PlaceKey], frozenset[PlaceKey]]:
    """Where the item places what it reports ("in Vienna", "a China visit", a large city
    named), and the countries of every city it names. A country named as someone's
    ("China's vice premier", "the Chinese president") says who, not where."""
    located: set[PlaceKey] = set()
    cities: set[PlaceKey] = set()
    big = large_cities()
    n = len(toks)
    for s, e, key in places:
        words = tuple(toks.lows[s:e])
        city = is_city(words)
        if city:
            cities.add(key)
        # The words around the place, within its sentence ("in the United States").
        b = s - 1 if s > 0 and toks[s - 1].low != "the" else s - 2
        before = toks[b].low if b >= 0 and _same_sentence(text, toks[b], toks[s]) else ""
        a = e + 1 if e < n and toks[e].low in _VISIT_QUALIFIERS else e
        after = toks[a].low if a < n and _same_sentence(text, toks[e - 1], toks[a]) else ""
        if (before in _LOCATIVE_BEFORE and not (
            before == "in" and b > 0 and toks[b - 1].low in _SUBJECT_BEFORE_IN
        )) or (before == "for" and b > 0 and toks[b - 1].low in _DEPARTS) \
                or after in _LOCATIVE_AFTER or (
                    city and not is_capital(words)
                    and big.get(words, ("", 0))[1] >= BARE_CITY_POPULATION):
            located.add(key)
    return frozenset(located), frozenset(cities)


# -- the title as a query -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facet:
    """One thing the title asks for, with every way an item may satisfy it."""

    kind: str  # "who" | "where" | "what" | "word"
    label: str
    forms: frozenset[Words] = frozenset()  # literal word sequences
    place: PlaceKey | None = None  # where: this place (or, for a region, its members)
    kinds: frozenset[str] = frozenset()  # what: kinds of development
    person: Words | None = None  # who: key into the role book
    roles: tuple[Role, ...] = ()  # who: offices the title or the seed gives
    # Each form as the text to look for in ``ItemFacts.joined``, and as it is shown.
    needles: tuple[tuple[str, str], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", tuple(
            (" " + " ".join(form) + " ", " ".join(form)) for form in self.forms))


@dataclass(frozen=True, slots=True)
class Query:
    """A storyline's facets; ``names`` tell who, ``places`` where."""

    facets: tuple[Facet, ...]
    visit: bool = False  # its development is a visit: its place is where it happens

    @property
    def has_who(self) -> bool:
        return any(f.kind == "who" for f in self.facets)

    @property
    def has_where(self) -> bool:
        return any(f.kind == "where" for f in self.facets)


def parse_title(
    title: str,
    aliases: Iterable[tuple[str, Iterable[str]]] = (),
    is_name: Callable[[str, Casing], bool] | None = None,
) -> Query:
    """The facets of ``title``.

    Places (from the gazetteer), offices in front of names ("King Charles"), words
    for a kind of development ("visit"), then what remains: capitalised runs are
    names (who), other content words are plain words. ``is_name`` may overrule the
    capital letter for a word (the stream knows that "Territorial" is not a name).
    ``aliases`` (a seed file's ``name -> other names``) add forms and offices to the
    facet whose name they share a word with.
    """
    title = composed(title)
    toks = _toks(title)
    han_names = languages.han_names(title) if languages.has_han(title) else frozenset()
    # "putin trip to china", as typed on a phone: no capital says anything, so places
    # are read in any case and names are what the stream writes as names.
    lower_case = any(t.text.isalpha() and t.text.islower() for t in toks) and not any(
        t.text[:1].isupper() for t in toks)
    places = _find_places(toks, any_case=lower_case)
    place_at = {i: (s, e, k) for s, e, k in places for i in range(s, e)}
    facets: list[Facet] = []
    seen_places: set[PlaceKey] = set()
    for s, e, key in places:
        if key not in seen_places:
            seen_places.add(key)
            text = " ".join(toks.texts[s:e])
            place_words = tuple(toks.lows[s:e])
            # A city asks for the city ("Ankara bombings" are not any Turkish bombing);
            # a country is satisfied by its names, demonyms and capital.
            if lower_case:
                text = text.title()  # "china" typed, "China" shown
            facets.append(Facet("where", text, frozenset({place_words}),
                                place=None if is_city(place_words) else key))
    content = [t for t in toks if t.low not in STOPWORDS and t.low not in _FILLER
               and not t.low.isdigit()]
    # In a title written in Title Case the capitals say nothing: only what the stream
    # knows to be a name is one ("Syrian Civil War" names no one called Civil).
    title_case = len(content) >= 2 and all(t.capitalised for t in content)
    kinds: set[str] = set()
    what_words: list[str] = []
    pending_role: list[Role] = []
    run: list[_Tok] = []
    words: list[str] = []
    written: dict[str, str] = {}  # a word's label: as typed, not its stem

    def close_run() -> None:
        nonlocal pending_role
        if not run:
            return
        name = tuple(t.low for t in run)
        label = " ".join(t.text.title() if lower_case else t.text for t in run)
        facets.append(Facet("who", label, frozenset({name}), person=name,
                            roles=tuple(pending_role)))
        pending_role = []
        run.clear()

    i = 0
    while i < len(toks):
        tok = toks[i]
        if i in place_at:
            close_run()
            i = place_at[i][1]
            continue
        role = _office_at(toks, i)
        if role is not None and i + role[0] < len(toks) and toks[i + role[0]].capitalised:
            close_run()
            pending_role.append((None, role[1]))
            i += role[0]
            continue
        low = tok.low
        kind = development_kinds(low) or development_kinds(low.removesuffix("s"))
        if kind:
            close_run()
            kinds.update(kind)
            what_words.append(low)
        elif run and low in _CONNECTORS and i + 1 < len(toks) and (
            toks[i + 1].capitalised
            or (lower_case and is_name is not None and is_name(toks[i + 1].low, "lower"))) \
                and i + 1 not in place_at:
            run.append(tok)  # "Belt and Road", "Bank of England"
        elif low in STOPWORDS or low in _FILLER or is_year(low) or low.isdigit():
            close_run()
        elif low in _NEVER_NAMES:
            close_run()  # a month or a day dates the story; it is not what it is about
        elif tok.text in han_names:
            close_run()  # Chinese has no capitals: the tagger says what is a name
            run.append(tok)
            close_run()
        elif (tok.capitalised and (
            is_name(low, "title" if title_case else "capital") if is_name is not None
            else not title_case
        )) or (lower_case and is_name is not None and is_name(low, "lower")):
            run.append(tok)
        elif len(low) < 2:
            close_run()  # a stray letter ("<b>" typed into a title) says nothing
        else:
            close_run()
            words.append(low)
            written.setdefault(low, tok.text)
        i += 1
    close_run()
    if kinds:
        facets.append(Facet("what", "/".join(dict.fromkeys(what_words)),
                            frozenset((w,) for w in what_words), kinds=frozenset(kinds)))
    for w in dict.fromkeys(words):
        label = written[w] if w != fold(written[w]) else w
        facets.append(Facet("word", label, frozenset({(w,)})))
    return Query(tuple(_with_aliases(facets, aliases)), visit="visit" in kinds)


def cased_title(title: str, query: Query) -> str:
    """``title`` with capitals where its query reads a name or a place, if it was typed
    all in lower case ("putin trip to china" -> "Putin trip to China"); else as is."""
    if any(ch.isupper() for ch in title):
        return title
    proper = {w for f in query.facets if f.kind in ("who", "where")
              for form in f.forms for w in form}

    def cap(m: re.Match[str]) -> str:
        word = m.group(0)
        if word.upper() in ABBREVIATIONS and fold(word) in proper:
            return word.upper()
        return word[:1].upper() + word[1:] if fold(word) in proper else word

    return re.sub(r"[^\W_]+", cap, title)


def _with_aliases(
    facets: list[Facet], aliases: Iterable[tuple[str, Iterable[str]]]
) -> list[Facet]:
    out = list(facets)
    for name, others in aliases:
        name_words = set(folded_words(name))
        for idx, f in enumerate(out):
            if f.kind not in ("who", "where") or not any(
                set(form) & name_words for form in f.forms
            ):
                continue
            forms = set(f.forms) | {folded_words(name)}
            roles = list(f.roles)
            for alias in others:
                facts = read_item(alias)
                if f.kind == "who" and facts.roles:
                    roles += [(r.place, r.office) for r in facts.roles]
                elif f.kind == "where" and facts.places:
                    continue  # the gazetteer already knows the place's names
                else:
                    forms.add(folded_words(alias))
            out[idx] = Facet(f.kind, f.label, frozenset(w for w in forms if w), f.place,
                             f.kinds, f.person, tuple(dict.fromkeys(roles)))
    return out


def facet_keys(query: Query, book: RoleBook) -> set[str]:
    """Keys an item must share with ``query`` for its facets to have a chance: places,
    the last word of each name, and offices (see :func:`item_keys`)."""
    keys: set[str] = set()
    for f in query.facets:
        if f.kind not in ("who", "where"):
            continue
        if f.place is not None:
            keys.add("p:" + f.place)
            keys.update("p:" + m for m in region_members(f.place))
        keys.update("w:" + form[-1] for form in f.forms if form)
        offices = list(f.roles) + (book.offices(f.person) if f.person is not None else [])
        keys.update("o:" + office for _, office in offices)
    return keys


def item_keys(facts: ItemFacts) -> set[str]:
    """The keys of what an item mentions, to look storylines up by (:func:`facet_keys`)."""
    keys = {"p:" + p for p in facts.places}
    keys.update("w:" + w for w in facts.word_set)
    for r in facts.roles:
        keys.add("o:" + r.office)
        keys.update("o:" + o for o in office_aliases(r.office))
    return keys


# -- learned offices ----------------------------------------------------------------


@dataclass(slots=True)
class RoleBook:
    """Which offices people hold, as the text the bot reads says it.

    Only people someone tracks are followed (``watch``). An apposition ("Treasury
    Secretary Janet Yellen", "Wang Yi, China's top diplomat") counts
    :data:`ROLE_EVIDENCE` at once; an office named in an item that also names the
    person (and apposed to nobody else) counts one.
    """

    counts: dict[Words, Counter[Role]] = field(default_factory=dict)
    watched: set[Words] = field(default_factory=set)
    max_roles: int = 12
    max_people: int = 20_000
    # A name is a run of capitalised words, which a headline in Title Case or a
    # string of tags can make as long as the item: longer runs, or a word longer than
    # a counted term, name no one, and the book stays bounded in bytes as well as in
    # entries (issue 18). "Mohammed bin Salman" is two runs: "bin" ends the first.
    max_name_words: int = 6
    max_name_chars: int = MAX_TERM_LENGTH

    def watch(self, person: Words) -> None:
        self.watched.add(person)
        self.counts.setdefault(person, Counter())

    def learn(self, facts: ItemFacts) -> None:
        """Learn offices from one item.

        Appositions are kept for anyone (bounded), so that a person tracked later
        is already known; an office beside a name only for people tracked now."""
        if not facts.roles:
            return
        named = [p for p in self.watched if _contains(facts.joined, p)]
        for r in facts.roles:
            if r.owner is not None and not self._a_name(r.owner):
                continue
            if r.owner is not None:
                # "Vladimir Putin" is known as Putin; "Xi Jinping" as Xi.
                keys = {r.owner, r.owner[-1:], r.owner[:1]}
                for key in keys:
                    self.counts.setdefault(key, Counter())
                    self._add(key, (r.place, r.office), ROLE_EVIDENCE)
                if len(self.counts) > self.max_people:
                    self._prune()
            elif len(named) == 1:
                # An item about one person that names an office apposed to nobody:
                # usually the same person referred to again ("Yellen ... the Treasury
                # secretary"). Several people named: no telling whose it is.
                self._add(named[0], (r.place, r.office), 1)

    def _a_name(self, words: Words) -> bool:
        return len(words) <= self.max_name_words and all(
            len(w) <= self.max_name_chars for w in words)

    def _prune(self) -> None:
        # Keep the people tracked and those most often seen in office.
        ranked = sorted(self.counts, key=lambda p: (p not in self.watched,
                                                    -sum(self.counts[p].values())))
        for p in ranked[self.max_people // 2 :]:
            del self.counts[p]

    def _add(self, person: Words, role: Role, n: int) -> None:
        c = self.counts[person]
        c[role] += n
        if len(c) > self.max_roles:
            for k, _ in c.most_common()[self.max_roles :]:
                del c[k]

    def offices(self, person: Words) -> list[Role]:
        """The offices known well enough to name ``person`` alone."""
        c = self.counts.get(person)
        if not c:
            return []
        # Whose office it is, per office: the place most often seen with it.
        best: dict[str, tuple[int, PlaceKey | None]] = {}
        total: Counter[str] = Counter()
        for (place, office), n in c.items():
            total[office] += n
            if place is not None and n > best.get(office, (0, None))[0]:
                best[office] = (n, place)
        if not total:
            return []
        # A person holds one office, maybe two: others seen beside them are other people's.
        top = max(total.values())
        return [(best.get(o, (0, None))[1], o) for o, n in total.items()
                if n >= ROLE_EVIDENCE and 2 * n >= top]

    def export(self) -> list[list[object]]:
        """A JSON-able copy, for the database."""
        return [[list(p), [[pl, o, n] for (pl, o), n in c.items()]] for p, c in
                self.counts.items()]

    def restore(self, rows: Iterable[Sequence[object]]) -> None:
        """Load what :meth:`export` wrote."""
        for person, roles in rows:
            key = tuple(str(w) for w in person)  # type: ignore[attr-defined]
            if not self._a_name(key):
                continue  # saved before names were bounded
            c = self.counts.setdefault(key, Counter())
            for place, office, n in roles:  # type: ignore[attr-defined]
                c[(None if place is None else str(place), str(office))] = int(n)


def _contains(joined: str, form: Words) -> bool:
    return " " + " ".join(form) + " " in joined


def _owner_is(owner: Words, person: Words) -> bool:
    # "Janet Yellen" is Yellen; "Yellen" is Janet Yellen.
    return owner[-len(person):] == person or person[-len(owner):] == owner


# -- judging an item ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Which facets an item satisfied, how, and whether that is enough."""

    ok: bool
    satisfied: tuple[tuple[Facet, str], ...]  # each facet with the text that satisfied it
    coverage: float  # weighted share of the title's facets satisfied
    hot: bool = False  # let through as a follow-up of a story that just moved
    near: bool = False  # one anchor and two facets: what another signal may complete


_WEIGHT = {"who": 1.0, "where": 1.0, "what": 0.6, "word": 0.5}


def _satisfies(f: Facet, facts: ItemFacts, book: RoleBook) -> str | None:
    for needle, text in f.needles:
        if needle in facts.joined:
            return text
    if f.kind == "who":
        # Imported here: the parse workers read items with this module and never
        # judge one, and rapidfuzz costs each of them about 4 MB.
        from rapidfuzz import fuzz, process

        # Names are spelt many ways ("Poutin", "Zelenskiy"): the surname, fuzzily.
        for form in f.forms:
            if len(form[-1]) >= FUZZY_MIN_LENGTH:
                near = process.extractOne(form[-1], facts.words, scorer=fuzz.ratio,
                                          score_cutoff=FUZZY_CUTOFF)
                if near is not None:
                    return str(near[0])
    if f.kind == "where" and f.place is not None:
        members = region_members(f.place)
        for key, text in facts.place_text:
            if key == f.place or key in members:
                return text
        return None
    if f.kind == "what":
        for kind in f.kinds:
            words = DEVELOPMENT_KINDS[kind] & facts.word_set
            if words:
                return min(words)
        return None
    if f.kind == "who" and facts.roles:
        learned = book.offices(f.person) if f.person is not None else []
        # An office the title gives ("King Charles") is held in the country the stream
        # says it is, once it says so: "the French leader" is then someone else.
        home = {o: p for p, o in learned if p is not None}
        known = [(p if p is not None else next(
            (h for o2, h in home.items() if roles_compatible(o, o2)), None), o)
            for p, o in f.roles] + learned
        for r in facts.roles:
            if r.owner is not None and (f.person is None or not _owner_is(r.owner, f.person)):
                continue  # the office is someone else's
            for place, office in known:
                if not roles_compatible(r.office, office):
                    continue
                # A country with the office must be the person's, where we know theirs.
                if (r.place is None and names_someone_alone(r.office)) or (place in (
                    r.place, None
                ) and r.place is not None):
                    return r.text
    return None


def judge(query: Query, facts: ItemFacts, book: RoleBook, *, quick: bool = False) -> Verdict:
    """Whether ``facts`` satisfy enough of ``query``.

    The rule a user would state: every kind of anchor the title names must be
    there (a person or organisation it names, and a place it names), two anchors
    where the title has two or more, and in all at least two of its facets — one
    shared word is never enough. A title of a single facet needs only that one.

    With ``quick``, an item missing the anchors gets a bare refusal (neither what it
    satisfied nor ``near``): for callers that only want what passes.
    """
    found: dict[int, str] = {}
    # Anchors first: without them nothing else matters to a quick caller.
    for idx, f in enumerate(query.facets):
        if f.kind in ("who", "where"):
            how = _satisfies(f, facts, book)
            if how is not None and not (f.kind == "where"
                                        and _visited_elsewhere(query, f, facts)):
                found[idx] = how
    if quick:
        anchors = sum(1 for f in query.facets if f.kind in ("who", "where"))
        kinds_met = {query.facets[i].kind for i in found}
        if len(found) < min(2, anchors) or (query.has_who and "who" not in kinds_met) or (
            query.has_where and "where" not in kinds_met
        ):
            return _REFUSED
    for idx, f in enumerate(query.facets):
        if f.kind not in ("who", "where"):
            how = _satisfies(f, facts, book)
            if how is not None:
                found[idx] = how
    sat = [(query.facets[i], found[i]) for i in sorted(found)]
    kinds = {f.kind for f, _ in sat}
    total = sum(_WEIGHT[f.kind] for f in query.facets) or 1.0
    coverage = sum(_WEIGHT[f.kind] for f, _ in sat) / total
    anchors = sum(1 for f in query.facets if f.kind in ("who", "where"))
    met = sum(1 for f, _ in sat if f.kind in ("who", "where"))
    ok = (
        len(sat) >= min(2, len(query.facets))
        and met >= min(2, anchors)
        and (not query.has_who or "who" in kinds)
        and (not query.has_where or "where" in kinds)
    )
    near = ok or (met >= 1 and len(sat) >= 2)
    return Verdict(ok, tuple(sat), coverage, near=near)


_REFUSED = Verdict(False, (), 0.0)


def _visited_elsewhere(query: Query, f: Facet, facts: ItemFacts) -> bool:
    """For a visit, the title's place is where it happens. An item that places itself
    in another country ("talks in San Francisco") and names the title's country only
    as someone's ("China's vice premier") or as a party ("Russia and China objected")
    is not news of that visit; nor is one that places itself nowhere and speaks of no
    visit ("Yellen says the US seeks ties with China")."""
    if f.place is None or not query.visit:
        return False
    wanted = {f.place} | region_members(f.place)
    if wanted & (facts.located | facts.cities):
        return False
    if facts.located - wanted:
        return True
    # Placed nowhere: the title's country only counts with word of a visit.
    return not DEVELOPMENT_KINDS["visit"] & facts.word_set


def elsewhere(query: Query, verdict: Verdict, facts: ItemFacts) -> bool:
    """Whether the item is placed somewhere the title is not: the title names a place,
    the item names neither it nor its country, and names another country (other than as
    someone's: "the British king" says who, not where)."""
    table = gazetteer()
    # A city's country is not elsewhere ("India" for a New Delhi summit).
    wanted = {f.place if f.place is not None else table.get(min(f.forms), None)
              for f in query.facets if f.kind == "where"}
    if not wanted:
        return False
    members = set(wanted)
    for key in wanted:
        if key is not None:
            members |= region_members(key)
    # Where the item says things happen outweighs a mere mention ("Russia and China
    # objected" at a meeting in Bengaluru is not in China).
    if not members & (facts.located | facts.cities) and facts.located - members:
        return True
    if facts.places & wanted or any(f.kind == "where" for f, _ in verdict.satisfied):
        return False
    whose = {r.place for r in facts.roles}
    return bool(facts.places - wanted - whose)


def someone_else(query: Query, verdict: Verdict, facts: ItemFacts, book: RoleBook) -> bool:
    """Whether an item that misses the title's person names an office-holder of a third
    country in their stead: "the Brazilian president arrives in Shanghai" is not a
    follow-up of "Macron state visit to China", however much the story just moved.
    Third means neither the title's places nor the person's own country; where that
    country is not known, only an office like theirs counts."""
    people = [f for f in query.facets if f.kind == "who"]
    if not people or any(f.kind == "who" for f, _ in verdict.satisfied):
        return False
    places: set[PlaceKey] = set()
    for f in query.facets:
        if f.kind == "where" and f.place is not None:
            places |= {f.place} | region_members(f.place)
    homes: set[PlaceKey] = set()
    offices: set[str] = set()
    for f in people:
        known = list(f.roles) + (book.offices(f.person) if f.person is not None else [])
        homes |= {p for p, _ in known if p is not None}
        offices |= {o for _, o in known}
    for r in facts.roles:
        if r.place is None or r.place in places or r.place in homes:
            continue
        if homes or any(roles_compatible(r.office, o) for o in offices):
            return True
    return False


_OFFICE_WORDS = {
    "president": "president", "leader": "leader", "prime_minister": "prime minister",
    "foreign_minister": "foreign minister", "finance_minister": "finance minister",
    "defence_minister": "defence minister", "monarch": "monarch", "pope": "pope",
}


def describe(query: Query) -> str:
    """What a storyline looks for, as the lines ``/track`` answers with: who, where, what,
    and what an alert needs."""
    lines: list[str] = []
    kinds = {"who": "Who", "where": "Where", "what": "What", "word": "Also"}
    for kind, head in kinds.items():
        parts = []
        for f in query.facets:
            if f.kind != kind:
                continue
            if kind == "what":
                parts.append(f"{f.label.replace('/', ', ')} (in any words for it)")
            elif kind == "who" and f.roles:
                offices = ", ".join(_OFFICE_WORDS.get(o, o) for _, o in f.roles[:2])
                parts.append(f"{f.label} (or as {offices})")
            else:
                parts.append(f.label)
        if parts:
            lines.append(f"{head}: " + " · ".join(parts))
    anchors = [f.label for k in ("who", "where") for f in query.facets if f.kind == k]
    if len(anchors) >= 2:
        lines.append(f"An alert needs {anchors[0]} and {anchors[1]} together; one alone is "
                     "other news. A person may be named by their office (\"the Kremlin "
                     "chief\"), a country by its capital.")
    return "\n".join(lines) if lines else "the words of the title"


def explain(verdict: Verdict) -> str:
    """``Putin (as "Kremlin chief") · China (as "Beijing") · visit``."""
    parts = []
    for f, how in verdict.satisfied:
        if f.kind == "word" and (how,) in f.forms:
            parts.append(f.label)  # the word as the title has it, not its stem
        elif f.kind in ("what", "word"):
            parts.append(how)
        elif fold(how) == fold(f.label) or fold(how) in fold(f.label).split():
            parts.append(f.label)
        else:
            parts.append(f'{f.label} (as "{how}")')
    if verdict.hot:
        parts.append("a follow-up: the story moved in the last day")
    return " · ".join(parts)
