"""Text processing shared by profiles, the matcher, seeding and near-duplicate collapse.

Everything here is pure and deterministic: text in, tokens out. The resources
are deliberately generic (English function words, job titles, country
demonyms) so that nothing depends on any particular data set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from bot.storylines import languages
from bot.storylines.folding import composed
from bot.storylines.folding import fold as fold  # re-exported: text readers fold too
from bot.storylines.knowledge import ADJECTIVES, country_records


def word_list(text: str) -> list[str]:
    """Whitespace-separated words of a resource string (keeps word lists readable)."""
    return text.split()


# English function words and reporting verbs that carry no topical signal.
STOPWORDS: frozenset[str] = frozenset(
    word_list(
    """
    a about above after again against all almost also although always am among an and another
    any are aren around as at back be became because become been before being below between
    both but by can cannot could did didn do does doesn doing don down during each either else
    ever every few for from further get gets got had has hasn have having he her here hers
    herself him himself his how however i if in into is isn it its itself just least less like
    made make many may me might more most much must my myself near nearly neither never new
    no nor not now of off often on once one only onto or other others our ours ourselves out
    over own per rather said same say says see seen she should since so some still such than
    that the their theirs them themselves then there these they this those though through thus
    to too toward towards under until up upon us very via was wasn we were weren what when
    where whether which while who whom whose why will with within without would yet you your
    yours yourself yourselves s t ll ve re d m amid according week weeks today yesterday
    tomorrow day days year years month months time times first last two three four five six
    seven eight nine ten several including include includes included announce announced
    announces report reports reported reportedly claim claims claimed take takes
    taken told tell tells amp
    monday tuesday wednesday thursday friday saturday sunday
    """)
) | languages.STOPWORDS  # Chinese and Russian ones: they cannot collide with English

# Generic titles and roles: they name the *kind* of person, not the person, so
# they are weak evidence alone but make role aliases ("Russian president").
TITLE_WORDS: frozenset[str] = frozenset(
    word_list(
    """
    president vice prime minister foreign defence defense interior finance secretary general
    chancellor king queen prince princess sheikh emir pope cardinal archbishop bishop
    chairman chairwoman chair ceo chief executive director head leader spokesman spokeswoman
    spokesperson ambassador envoy governor mayor senator congressman congresswoman
    representative judge justice commander minister's premier deputy assistant adviser advisor
    officer official general colonel lieutenant major captain admiral sergeant dr mr mrs ms
    miss sir lord lady founder owner coach manager state security council foreign ministry
    """)
)

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_YEAR_RE = re.compile(r"^(1[89]|20)\d\d$")
# Characters: a longer token (a hash, a URL's path) is counted in no statistics, and a
# longer word is no one's name (the matcher's terms, the role book's names).
MAX_TERM_LENGTH = 40


# Regions and nations that no country entry names in one word, and other one-word names
# of countries, with their demonyms. Countries themselves come from the countryinfo data
# package (:func:`_country_words`); entries here add to them.
_REGIONS: dict[str, tuple[str, ...]] = {
    "europe": ("european", "europeans"),
    "american": ("america", "usa"),
    "british": ("britain", "briton", "britons", "uk"),
    "england": ("english",),
    "scotland": ("scottish", "scots"),
    "wales": ("welsh",),
    "kurdistan": ("kurdish", "kurd", "kurds"),
    "palestine": ("palestinian", "palestinians"),
    "arabia": ("arabian",),
    "korea": ("korean", "koreans"),
}


def _country_words() -> dict[str, tuple[str, ...]]:
    """One canonical word per country (its common name, or its demonym when the name has
    several words: "american") with every one-word name and demonym that means it.

    Territories share demonyms with their countries (Macau's people are "Chinese"):
    the most populous country takes a shared word."""
    out: dict[str, list[str]] = {}
    canon_of: dict[str, str] = {}
    taken: set[str] = set()
    for rec in country_records():  # most populous first
        name, demonym = fold(rec.name), fold(rec.demonym)
        canon = name if name.isalpha() else demonym if demonym.isalpha() else ""
        if not canon or canon in taken:
            continue
        taken.add(canon)
        canon_of[rec.iso] = canon
        forms = out.setdefault(canon, [])
        spellings = [name, demonym, *(fold(a) for a in rec.alt_names)]
        if demonym.isalpha():
            spellings.append(_plural(demonym))
        for w in spellings:
            if w.isascii() and w.isalpha() and w not in taken:
                taken.add(w)
                forms.append(w)
    for word, iso in ADJECTIVES.items():
        if iso in canon_of and word not in taken:
            out[canon_of[iso]].append(word)
    for canon, words in _REGIONS.items():
        forms = out.setdefault(canon, [])
        forms += [w for w in words if w not in forms]
    return {canon: tuple(forms) for canon, forms in out.items()}


def _plural(word: str) -> str:
    return word if word.endswith(("s", "ese", "sh", "ch")) else word + "s"


_DEMONYMS: dict[str, tuple[str, ...]] = _country_words()

DEMONYM_TO_PLACE: dict[str, str] = {
    demonym: place for place, demonyms in _DEMONYMS.items() for demonym in demonyms
}
PLACE_TO_DEMONYM: dict[str, str] = {
    place: demonyms[0] if demonyms else place for place, demonyms in _DEMONYMS.items()
}


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light, predictable stemmer: possessives and plurals only.

    Heavier stemmers merge unrelated words ("general"/"generate"); fuzzy
    matching in the matcher covers the remaining inflections.
    """
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    elif word.endswith(("'", "’")):
        word = word[:-1]
    word = word.replace("’", "'")
    if word in DEMONYM_TO_PLACE:
        return DEMONYM_TO_PLACE[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        word = word[:-1]
    return DEMONYM_TO_PLACE.get(word, word)


def is_year(tok: str) -> bool:
    """Whether a token is a year (1800-2099): kept as a token, but it dates, not topics."""
    return bool(_YEAR_RE.match(tok))


def words(text: str) -> list[str]:
    """The words of ``text`` in order, case kept (for entity detection)."""
    return _WORD_RE.findall(text)


def tokens(text: str) -> list[str]:
    """Content tokens of ``text`` in order: folded, stemmed, stopwords and numbers dropped.

    Years are kept: "2015 wildfires" and "2023 forum" are useful anchors.
    """
    if languages.needs(text):
        return _tokens_other(text)
    text = composed(text)
    return tokens_of(fold_written(text, split_words(text)[1]))


def tokens_of(words: Iterable[str]) -> list[str]:
    """The content tokens of folded words (:func:`fold_written`), in order.

    One tokenisation serves both readings of an item: the facts' words
    (``facets.ItemFacts.words``, read in the parse worker) give its tokens without
    a second pass over the text. A word's token depends on the word alone, so it is
    looked up in C for the ~130 words of each of the thousands of items a first pass
    reads (issue 18).
    """
    return [tok for tok in map(_token_of, words) if tok]


# A word, captured so that ``split`` gives the text between words too. "U.S." and
# "U.K." are one word, for the places they name (``facets``); no token (_token_of).
WORD_SPLIT = re.compile(r"(U\.S\.(?:A\.)?|U\.K\.|[^\W_]+(?:['’][^\W_]+)*)", re.UNICODE)
_POSSESSIVE = frozenset({"'s", "’s", "'S"})


def split_words(text: str) -> tuple[list[str], list[str]]:
    """``text`` split on its words: every part (gap, word, gap, ..., gap), and the
    words as written, possessives dropped ("Putin's" -> "Putin")."""
    parts = WORD_SPLIT.split(text)
    written: list[str] = parts[1::2]
    if "'s" in text or "’s" in text or "'S" in text:
        written = list(map(unpossessive, written))
    return parts, written


def fold_written(text: str, written: list[str]) -> Iterable[str]:
    """The words ``split_words`` found in ``text``, folded one by one."""
    if not text.isascii() and not "".join(written).isascii():
        # A "…" or "’" between words leaves them ASCII (the test above); "Zürich" not.
        return [w.casefold() if w.isascii() else fold(w) for w in written]
    return map(str.casefold, written)  # ASCII words fold as they casefold


def unpossessive(word: str) -> str:
    """"Putin's" -> "Putin"."""
    return word[:-2] if word[-2:] in _POSSESSIVE and len(word) > 2 else word


# News repeats its words (Zipf): 16,384 entries (under 4 MB) serve most look-ups, and
# the parse worker's memory stays bounded however long it runs.
@lru_cache(maxsize=16_384)
def _token_of(raw: str) -> str:
    """The token a folded word gives, or "" for none (stopwords, numbers, one letter,
    and "u.s." and "u.k.": as tokens they were always one-letter words, dropped)."""
    if raw in STOPWORDS or "." in raw or (raw.isdigit() and not _YEAR_RE.match(raw)):
        return ""
    tok = stem(raw)
    return "" if len(tok) < 2 or tok in STOPWORDS else tok


def _tokens_other(text: str) -> list[str]:
    """:func:`tokens` of a text holding Chinese or Cyrillic words (``languages``)."""
    out: list[str] = []
    for written, low, _, _ in languages.words(text, fold):
        if low in STOPWORDS or written.casefold() in STOPWORDS:
            continue
        if low.isdigit() and not _YEAR_RE.match(low):
            continue
        if low.isascii():
            low = stem(low)
            if len(low) < 2 or low in STOPWORDS:
                continue
        elif len(low) < 2 and not languages.has_han(low):
            continue
        out.append(low)
    return out


def sentences(text: str) -> list[str]:
    """Split text into sentences on terminal punctuation and blank lines."""
    return [s.strip() for s in _SENTENCE_RE.split(text) if s.strip()]


@dataclass(frozen=True, slots=True)
class Span:
    """A run of capitalised words: a candidate name ("Chinese Foreign Minister Wang Yi")."""

    text: str
    words: tuple[str, ...]
    sentence_start: bool


_CONNECTORS = frozenset({"of", "the", "and", "de", "del", "al", "bin", "von", "van", "la", "le"})


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() or (len(word) > 1 and word.isupper())


def capitalised_spans(text: str) -> list[Span]:
    """Runs of capitalised words, allowing inner connectors ("Bank of England").

    Punctuation other than spaces and hyphens ends a run ("Yuri Ushakov,
    Russia's ..." gives two). Possessives are dropped ("Putin's" -> "Putin").
    Sentence-initial function words ("The") are not part of a name; other
    sentence-initial spans are kept but flagged, since their first word may be
    capitalised only by position.
    """
    spans: list[Span] = []
    for sentence in sentences(text):
        matches = list(_WORD_RE.finditer(sentence))
        ws = [re.sub(r"['’]s?$", "", m.group(0)) or m.group(0) for m in matches]
        # breaks[j]: punctuation between word j-1 and word j ends a name.
        breaks = [True] + [
            bool(sentence[matches[j - 1].end() : matches[j].start()].strip(" -–"))
            or matches[j - 1].group(0).endswith(("'s", "’s"))
            for j in range(1, len(matches))
        ]
        i = 0
        while i < len(ws):
            if not _is_capitalised(ws[i]):
                i += 1
                continue
            j = i + 1
            while j < len(ws) and not breaks[j]:
                if _is_capitalised(ws[j]):
                    j += 1
                elif (
                    ws[j].lower() in _CONNECTORS
                    and j + 1 < len(ws)
                    and not breaks[j + 1]
                    and _is_capitalised(ws[j + 1])
                ):
                    j += 2
                else:
                    break
            run = ws[i:j]
            start = i == 0
            while run and fold(run[0]) in STOPWORDS:
                run = run[1:]
                start = False
            while run and fold(run[-1]) in _CONNECTORS:
                run = run[:-1]
            if run:
                spans.append(Span(" ".join(run), tuple(run), start))
            i = j
    return spans


def is_title_word(word: str) -> bool:
    """Whether ``word`` is a generic role word ("president", "minister")."""
    return fold(word) in TITLE_WORDS


def is_demonym_or_place(word: str) -> bool:
    """Whether ``word`` names a country/region or its people ("Russian", "China")."""
    w = fold(word)
    return w in DEMONYM_TO_PLACE or w in PLACE_TO_DEMONYM


def normalise_for_compare(text: str) -> str:
    """Text reduced to its content tokens joined by spaces, for rapidfuzz comparisons."""
    return " ".join(tokens(text))
