"""One alert per development: collapse near-duplicate reports of the same news.

Outlets rewrite the same wire story. When new items match a storyline, the
pipeline asks :func:`find_duplicates` which of them repeat an alert already sent
for that storyline (within a time window) or an earlier item of the same poll;
those are folded into that alert instead of sending another.

Two reports are the same development when their titles are close *and* nothing
in them says otherwise. Surface similarity alone cannot tell "Magnitude 5.1
earthquake strikes Fukushima prefecture" from "... Miyagi prefecture", so each
title's *marks* (the names and numbers it gives) are compared: when each title
gives a mark the other does not mention at all, they report different events,
however similar the rest. Shared names in turn let a rewrite with other verbs
("lands"/"arrives", "forum"/"summit") collapse.

Cost: every report is processed once per call, titles are scored against each
other in C (rapidfuzz ``cdist`` with a cutoff), and only pairs above the cutoff
are checked in Python. At most ``DedupeConfig.max_recent`` earlier alerts per
storyline are considered. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process

from bot.models import Item
from bot.storylines.knowledge import DEVELOPMENT_KINDS
from bot.storylines.text import (
    STOPWORDS,
    fold,
    is_demonym_or_place,
    is_title_word,
    normalise_for_compare,
    sentences,
    stem,
    tokens,
    words,
)


@dataclass(frozen=True, slots=True)
class Report:
    """What the collapse needs to know about an item or an earlier alert."""

    title: str
    summary: str = ""
    published: datetime | None = None
    source: str = ""
    key: str = ""

    @classmethod
    def of(cls, item: Item) -> Report:
        return cls(item.title, item.summary, item.published, item.source, item.key)


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """Thresholds for calling two reports the same development."""

    window: timedelta = timedelta(hours=36)
    """Only alerts published this close to the new item are considered."""
    title_ratio: float = 82.0
    """Processed-title similarity (0-100) that alone means duplicate."""
    title_support: float = 60.0
    """Below this title similarity two reports are never duplicates; above it
    (and below ``title_ratio``) they are when the full texts or the names agree:"""
    text_ratio: float = 75.0
    """...``token_sort_ratio`` of processed title+summary at least this, or..."""
    same_names: int = 3
    """...at least this many shared names (Putin, Beijing, Belt, Road): two can be
    one person in one place doing something else ("arrives" / "wins election")..."""
    same_names_share: float = 0.75
    """...making at least this share of all the names of both titles, with..."""
    same_rest_share: float = 0.5
    """...at least this share of the shorter title's other words (or their kinds of
    development: "lands" is "arrives") in the other."""
    max_recent: int = 500
    """Earlier alerts considered per storyline, the newest: a storyline with more
    alerts than this in one window is a firehose, and a rewrite of an older alert
    would be sent again rather than make every poll slower."""
    text_tokens: int = 80
    """Content tokens of title+summary compared, so a long summary costs no more."""


DEFAULT_DEDUPE = DedupeConfig()

# Queries scored against the earlier reports in blocks of this many rows, so the
# score matrix stays a few MB however large a poll is.
_BLOCK = 256

_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
# Where a headline's clauses start ("Japan: ...", "... - Reuters", "Quake hits. ..."):
# the first word after one is capitalised by position, not because it is a name.
_CLAUSE_RE = re.compile(r"[:;|.!?]\s+|\s[-–—]\s")


def _token(word: str) -> str | None:
    """The comparable token of one word, None for function words."""
    raw = fold(word)
    if raw in STOPWORDS:
        return None
    tok = stem(raw)
    return None if len(tok) < 2 or tok in STOPWORDS else tok


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _is_word(word: str) -> bool:
    """Letters only, apart from a possessive ("Russia's"): numbers are marks of their own."""
    return word.replace("'", "").replace("’", "").isalpha()


# The window's titles come back every poll: split each once.
@lru_cache(maxsize=8192)
def _clauses(title: str) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """Each clause's words, and whether its case says nothing (Title Case, CAPS).

    In "Magnitude 5.1 Earthquake Strikes Fukushima Prefecture" every word is
    capitalised, so capitals do not single out the names there.
    """
    out: list[tuple[tuple[str, ...], bool]] = []
    for clause in _CLAUSE_RE.split(title):
        ws = tuple(words(clause))
        content = [w for w in ws[1:] if _is_word(w) and fold(w) not in STOPWORDS]
        # Title Case capitalises every content word; one in lower case ("Kremlin says
        # Putin will receive Wang Yi in Moscow") means the capitals are names.
        headline = len(content) >= 2 and all(_capitalised(w) for w in content)
        out.append((ws, headline))
    return tuple(out)


class NameEvidence:
    """How the reports of one collapse write each word, where case means something.

    A word capitalised in the middle of a sentence-case title or a summary
    sentence is a name ("Fukushima", "Putin"); written in lower case there, it is
    not ("earthquake"). The evidence decides the words whose case says nothing:
    the first of a clause and those of Title Case headlines.
    """

    def __init__(self, reports: Iterable[Report], *, summary_chars: int = 600) -> None:
        self._upper: Counter[str] = Counter()
        self._lower: Counter[str] = Counter()
        for r in reports:
            for ws, headline in _clauses(r.title):
                if not headline:
                    self._count(ws[1:])
            # Only the start of a summary: enough sentences to see how words are written.
            for sentence in sentences(r.summary[:summary_chars]):
                self._count(words(sentence)[1:])

    def _count(self, ws: Iterable[str]) -> None:
        for w in ws:
            if not _is_word(w):
                continue
            tok = _token(w)
            if tok is not None:
                (self._upper if _capitalised(w) else self._lower)[tok] += 1

    def is_name(self, tok: str) -> bool:
        """Whether ``tok`` is written as a name more often than not (unknown: no)."""
        return self._upper[tok] > self._lower[tok]


def mark_spans(title: str, evidence: NameEvidence) -> tuple[frozenset[str], ...]:
    """The names and numbers a title gives, one token set per name ("Wang Yi").

    Numbers always count ("5.1", "14"); so do the countries and demonyms the text
    module knows. Other words count when capitalised where case means something, or,
    where it does not, when ``evidence`` says they are names. Generic roles
    ("President") name a kind of person, not a person, and do not. Adjacent name
    words make one name, up to a possessive ("Russia's Putin": two).
    """
    spans: list[frozenset[str]] = [
        frozenset({n.replace(",", "")}) for n in _NUMBER_RE.findall(title)
    ]
    for ws, headline in _clauses(title):
        run: list[str] = []
        for i, w in enumerate(ws):
            tok = _token(w) if _is_word(w) else None
            # The stem is checked for roles: "President's", "Ministers". Case means
            # something after a clause's first word of a sentence-case title.
            name = tok is not None and not is_title_word(tok) and (
                is_demonym_or_place(tok)
                or (_capitalised(w) and ((i > 0 and not headline) or evidence.is_name(tok)))
            )
            if name and tok is not None:
                run.append(tok)
            if run and (not name or w.endswith(("'s", "’s", "'", "’"))):
                spans.append(frozenset(run))
                run = []
        if run:
            spans.append(frozenset(run))
    return tuple(spans)


def marks(title: str, evidence: NameEvidence) -> frozenset[str]:
    """Every token of :func:`mark_spans`: the names and numbers a title gives."""
    return frozenset(tok for span in mark_spans(title, evidence) for tok in span)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A report processed once for every comparison it takes part in."""

    report: Report
    title: str
    """Processed title: content tokens in order."""
    title_sorted: str
    """The same tokens sorted, so that ``ratio`` on it is ``token_sort_ratio``."""
    text_sorted: str
    """Processed title+summary, capped, tokens sorted."""
    mentions: frozenset[str]
    """Every token and number of the title: what it mentions at all."""
    marks: frozenset[str]
    """Its names' and numbers' tokens (:func:`marks`)."""
    names: tuple[frozenset[str], ...]
    """The same, one set per name (:func:`mark_spans`)."""
    rest: tuple[frozenset[str], ...] = ()
    """What the title says besides its names, a set per word: the kinds of development
    a word names ("lands" and "arrives" are both a visit), or the word itself."""


def prepare(report: Report, evidence: NameEvidence, config: DedupeConfig = DEFAULT_DEDUPE
            ) -> Prepared:
    """Process ``report`` for comparison."""
    title_tokens = tokens(report.title)
    text = normalise_for_compare(f"{report.title} {report.summary}").split()[: config.text_tokens]
    names = mark_spans(report.title, evidence)
    found = frozenset(tok for span in names for tok in span)
    numbers = {n for n in found if n[:1].isdigit()}
    return Prepared(
        report=report,
        title=" ".join(title_tokens),
        title_sorted=" ".join(sorted(title_tokens)),
        text_sorted=" ".join(sorted(text)),
        mentions=frozenset(title_tokens) | numbers,
        marks=found,
        names=names,
        rest=_rest(report.title, found),
    )


def _kinds_of_words() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for kind, kind_words in DEVELOPMENT_KINDS.items():
        for word in kind_words:
            out[word] = out.get(word, frozenset()) | {kind}
    return out


# Each word that reports a kind of development ("lands", "talks"), with its kinds.
_KINDS_OF = _kinds_of_words()


def _rest(title: str, names: frozenset[str]) -> tuple[frozenset[str], ...]:
    out = []
    for word in words(title):
        tok = _token(word)
        if tok is None or tok in names or not _is_word(word):
            continue
        out.append(_KINDS_OF.get(fold(word)) or frozenset({tok}))
    return tuple(out)


def _rest_agrees(a: Prepared, b: Prepared, config: DedupeConfig) -> bool:
    """Whether what the titles say besides their names agrees: most words of the shorter
    one, or kinds of development ("lands"/"arrives"), are in the other. The same people
    in the same place doing something else ("discuss joint drills" / "meet business
    leaders") are two developments."""
    if not a.rest or not b.rest:
        return True  # a title of names alone says nothing else
    short, other = (a.rest, b.rest) if len(a.rest) <= len(b.rest) else (b.rest, a.rest)
    pool = frozenset().union(*other)
    agreed = sum(1 for labels in short if labels & pool)
    return agreed >= config.same_rest_share * len(short)


def different_events(a: Prepared, b: Prepared) -> bool:
    """Whether each title gives a name or number the other does not mention.

    One-sided extras are detail ("Putin arrives in Beijing" / "Russia's Putin
    arrives in Beijing"); two-sided ones are two events (Fukushima / Miyagi).
    """
    return bool(a.marks - b.mentions) and bool(b.marks - a.mentions)


def _same_names(a: Prepared, b: Prepared, config: DedupeConfig) -> bool:
    """Whether both titles give the same names: "Wang Yi" is one name, not two."""
    shared = min(sum(1 for n in a.names if n <= b.marks), sum(1 for n in b.names if n <= a.marks))
    union = len(a.names) + len(b.names) - shared
    return shared >= config.same_names and shared >= config.same_names_share * union


def same_development(
    a: Prepared, b: Prepared, title: float, config: DedupeConfig = DEFAULT_DEDUPE
) -> bool:
    """Whether ``a`` and ``b``, whose titles score ``title``, report one development."""
    if title < config.title_support or different_events(a, b):
        return False
    if (
        a.report.published is not None
        and b.report.published is not None
        and abs(a.report.published - b.report.published) > config.window
    ):
        return False
    if title >= config.title_ratio or (_same_names(a, b, config) and _rest_agrees(a, b, config)):
        return True
    if not (a.text_sorted and b.text_sorted):
        return False
    return fuzz.ratio(a.text_sorted, b.text_sorted) >= config.text_ratio


@dataclass(frozen=True, slots=True)
class Collapse:
    """What :func:`find_duplicates` found, and what it cost."""

    duplicate_of: tuple[int | None, ...]
    """Per new report: the position, in ``[*earlier, *new]``, of the report it
    repeats, or None when it is news."""
    scored_pairs: int
    """Title pairs scored in C by ``cdist``."""
    checked_pairs: int
    """Pairs above the title cutoff, checked in Python."""


def _title_scores(queries: Sequence[Prepared], choices: Sequence[Prepared],
                  cutoff: float) -> np.ndarray:
    """Title similarity of each query with each choice, 0-100, 0 where below ``cutoff``.

    The better of ``ratio`` on the processed titles and on their sorted tokens
    (``token_sort_ratio``), so that reordered headlines ("Putin lands in
    Beijing" / "In Beijing, Putin lands") score like identical ones.
    """
    plain: np.ndarray = process.cdist(
        [q.title for q in queries], [c.title for c in choices],
        scorer=fuzz.ratio, score_cutoff=cutoff, dtype=np.float32,
    )
    ordered: np.ndarray = process.cdist(
        [q.title_sorted for q in queries], [c.title_sorted for c in choices],
        scorer=fuzz.ratio, score_cutoff=cutoff, dtype=np.float32,
    )
    scores: np.ndarray = np.maximum(plain, ordered)
    # rapidfuzz scores two empty strings 100; an empty title is like nothing.
    scores[[not q.title for q in queries], :] = 0
    scores[:, [not c.title for c in choices]] = 0
    return scores


def find_duplicates(
    new: Sequence[Report], earlier: Sequence[Report], config: DedupeConfig = DEFAULT_DEDUPE
) -> Collapse:
    """Which of ``new`` (one storyline's matches, in order) repeat an earlier report.

    ``earlier`` are alerts already sent for that storyline, oldest first; only
    the newest ``config.max_recent`` are considered. A new report that repeats
    nothing becomes an alert itself and can absorb later ones, so two outlets in
    one feed body make one alert. Among the reports a new one repeats, the one
    with the most similar title wins. Reports without a time are compared
    regardless of the window (we cannot tell they are far apart).
    """
    skipped = max(0, len(earlier) - config.max_recent)
    kept = list(earlier[skipped:])
    if not new:
        return Collapse((), 0, 0)
    evidence = NameEvidence([*kept, *new])
    prepared = [prepare(r, evidence, config) for r in (*kept, *new)]
    m = len(kept)
    alive = [True] * m + [False] * len(new)
    found: list[int | None] = []
    scored = checked = 0
    for start in range(0, len(new), _BLOCK):
        stop = min(start + _BLOCK, len(new))
        choices = prepared[: m + stop]
        scores = _title_scores(prepared[m + start : m + stop], choices, config.title_support)
        scored += (stop - start) * len(choices)
        for row in range(stop - start):
            i = start + row
            line = scores[row, : m + i]
            best: int | None = None
            best_score = -1.0
            for j in np.flatnonzero(line).tolist():
                if not alive[j]:
                    continue
                checked += 1
                score = float(line[j])
                if score > best_score and same_development(
                    prepared[m + i], prepared[j], score, config
                ):
                    best, best_score = j, score
            if best is None:
                alive[m + i] = True
                found.append(None)
            else:
                found.append(best + skipped)
    return Collapse(tuple(found), scored, checked)


def find_duplicate(
    new: Report, recent: Sequence[Report], config: DedupeConfig = DEFAULT_DEDUPE
) -> Report | None:
    """The earlier alert in ``recent`` (oldest first) that ``new`` repeats, or None."""
    position = find_duplicates([new], recent, config).duplicate_of[0]
    return None if position is None else recent[position]


class Collapser:
    """Keeps recent alerts per storyline and answers "is this a duplicate?".

    A convenience over :func:`find_duplicates` for callers without storage;
    memory is bounded by ``config.max_recent`` per storyline.
    """

    def __init__(self, config: DedupeConfig = DEFAULT_DEDUPE) -> None:
        self.config = config
        self._recent: dict[int, list[Report]] = {}

    def check(self, storyline_id: int, report: Report) -> Report | None:
        """Return the earlier alert ``report`` duplicates, else remember it and return None."""
        recent = self._recent.setdefault(storyline_id, [])
        dup = find_duplicate(report, recent, self.config)
        if dup is None:
            recent.append(report)
            del recent[: -self.config.max_recent]
        return dup
