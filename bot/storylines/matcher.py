"""The storyline matcher: scores new items against storyline profiles and explains why.

How it decides (details and measured figures in docs/matching.md):

1. Text is processed once per item: folded, tokenised, lightly stemmed,
   demonyms mapped to places ("Russian" -> "russia"). A token that is not in
   any profile's vocabulary is fuzzy-matched once against it with rapidfuzz
   (spellings, transliterations) and the answer is cached.
2. Word relevance blends two BM25-weighted measures with IDF from every item
   observed so far: how much of the storyline's weighted terms the item covers,
   and the cosine between the two. Coverage suits short titles, cosine long
   seeds; the blend keeps one threshold usable for both.
3. Entities (under any alias) and key phrases found in the item add a capped
   bonus and make the explanation ("Putin ~ Russian president; Beijing").
4. Adaptive tracking: confident matches build a per-storyline centroid; an item
   close to it gets part of the way towards that similarity. The centroid can
   only add up to ``max_adapt`` of the gap, so the seed always dominates.
5. Freshness: a storyline that has been quiet for a while needs stronger
   evidence (news comes in bursts), never less than ``dormant_floor``.

Candidate storylines per item come from an inverted index, so the cost per item
grows with the postings of its words, not with the number of storylines.
One default configuration, :data:`DEFAULT_CONFIG`, is used everywhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rapidfuzz import fuzz, process

from bot.models import Item, Match, Storyline
from bot.storylines.profile import Entity, Profile, build_profile
from bot.storylines.text import TITLE_WORDS, tokens


class SemanticScorer(Protocol):
    """An optional extra signal (e.g. sentence embeddings) blended into word scores."""

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        """Similarity in [0, 1] for every (item, storyline) pair, items first."""
        ...


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Matcher settings. The defaults are the one documented configuration."""

    threshold: float = 0.23
    """A pair whose final score reaches this is a match."""
    coverage_mix: float = 0.5
    """Blend of profile coverage (1.0) and cosine (0.0) in the word score."""
    fuzzy_cutoff: float = 88.0
    """rapidfuzz ``ratio`` a token needs to count as a spelling of a profile term."""
    fuzzy_min_length: int = 5
    """Shorter tokens are never fuzzy-matched: too many short words look alike."""
    entity_bonus: float = 0.10
    """Added per matched entity (times its weight)..."""
    phrase_bonus: float = 0.05
    """...and per key phrase found..."""
    max_bonus: float = 0.25
    """...up to this much in all."""
    learn_threshold: float = 0.30
    """Only matches at least this confident teach the storyline (adaptive tracking)."""
    adapt_step: float = 0.1
    """Each learned item lets the centroid close this much more of the gap..."""
    max_adapt: float = 0.4
    """...up to this share: the seed always keeps the larger say."""
    max_learned_terms: int = 40
    """The centroid keeps only its heaviest terms: bounded memory, no long tail drift."""
    half_life_days: float = 10.0
    """Word evidence for a storyline quiet this long counts (1 + floor) / 2 as much..."""
    dormant_floor: float = 0.45
    """...and never less than this share, however long it has been quiet."""
    max_docs: int = 20_000
    """Corpus statistics are halved beyond this many items: bounded memory, recent IDF."""
    refresh_ratio: float = 0.02
    """Cached profile norms are recomputed when the corpus grew by this share."""
    semantic: SemanticScorer | None = None
    """Optional extra scorer; when None, words alone decide."""
    semantic_weight: float = 0.3


DEFAULT_CONFIG = MatcherConfig()

_K1 = 1.2  # BM25 term-frequency saturation


@dataclass(frozen=True, slots=True)
class Assessment:
    """The matcher's verdict on one (item, storyline) pair."""

    item_key: str
    storyline_id: int
    score: float
    matched: bool
    reason: str


@dataclass(slots=True)
class _Doc:
    """An item's text, processed once per batch."""

    key: str
    published: datetime | None
    toks: list[str]
    weights: dict[str, float]  # BM25-saturated tf x idf
    norm: float
    joined: str  # " tok tok tok " for phrase lookups


@dataclass(slots=True)
class _State:
    """What the matcher has learned about one storyline."""

    centroid: dict[str, float] = field(default_factory=dict)  # summed unit tf vectors
    matches: int = 0
    last_active: datetime | None = None


@dataclass(slots=True)
class _Entry:
    """A storyline in the index, with norms cached for the current IDF."""

    storyline: Storyline
    profile: Profile
    pw: dict[str, float] = field(default_factory=dict)  # profile weight x idf
    pnorm: float = 0.0
    pmass: float = 0.0
    cw: dict[str, float] = field(default_factory=dict)  # centroid weight x idf
    bonus: dict[str, float] = field(default_factory=dict)  # upper bound of bonus per token
    cnorm: float = 0.0
    n_docs: float = -1.0  # corpus size the cache was computed for


class Matcher:
    """Scores items against storylines; keeps corpus statistics and learned state.

    Not thread-safe: one matcher per pipeline, fed batches in time order.
    """

    def __init__(self, config: MatcherConfig | None = None) -> None:
        self.config = config or DEFAULT_CONFIG
        self._df: Counter[str] = Counter()
        self._n_docs = 0.0
        self._entries: dict[int, _Entry] = {}
        self._states: dict[int, _State] = {}
        self._postings: dict[str, set[int]] = {}
        self._vocab_list: list[str] = []
        self._vocab_dirty = False
        self._canon: dict[str, str] = {}

    # -- corpus statistics -------------------------------------------------

    def observe(self, items: Sequence[Item]) -> None:
        """Count the items' terms into the IDF statistics."""
        for item in items:
            for tok in set(tokens(f"{item.title} {item.summary}")):
                self._df[tok] += 1
            self._n_docs += 1
        if self._n_docs > self.config.max_docs:
            # Halving keeps memory bounded and lets IDF follow the news of the day.
            self._n_docs /= 2
            for tok in list(self._df):
                half = self._df[tok] // 2
                if half:
                    self._df[tok] = half
                else:
                    del self._df[tok]

    def idf(self, tok: str) -> float:
        """BM25-style IDF from the items observed so far (never negative)."""
        df = self._df.get(tok, 0)
        return math.log(1.0 + (self._n_docs - df + 0.5) / (df + 0.5))

    # -- storylines ----------------------------------------------------------

    def profile(self, storyline: Storyline) -> Profile:
        """The (cached) profile of ``storyline``; rebuilt if the storyline changed."""
        return self._entry(storyline).profile

    def _entry(self, storyline: Storyline) -> _Entry:
        entry = self._entries.get(storyline.id)
        if entry is not None and entry.storyline == storyline:
            return entry
        if entry is not None:
            self._unindex(storyline.id, entry)
            self._states.pop(storyline.id, None)  # edited storyline: start afresh
        entry = _Entry(storyline, build_profile(storyline))
        self._entries[storyline.id] = entry
        self._index(storyline.id, entry)
        return entry

    def _terms_of(self, entry: _Entry) -> set[str]:
        state = self._states.get(entry.storyline.id)
        out = set(entry.profile.terms) | entry.profile.entity_tokens()
        if state is not None:
            out |= set(state.centroid)
        return out

    def _index(self, sid: int, entry: _Entry) -> None:
        for tok in self._terms_of(entry):
            posting = self._postings.setdefault(tok, set())
            if not posting:
                self._vocab_dirty = True
            posting.add(sid)
        entry.n_docs = -1.0
        # Any entity or phrase found has a token in the item, so summing each
        # one's bonus over its tokens bounds the bonus from above.
        bonus: dict[str, float] = {}
        cfg = self.config
        for ent in entry.profile.entities:
            for tok in {t for f in ent.forms for t in f}:
                bonus[tok] = bonus.get(tok, 0.0) + cfg.entity_bonus * ent.weight
        for phrase in entry.profile.phrases:
            for tok in set(phrase):
                bonus[tok] = bonus.get(tok, 0.0) + cfg.phrase_bonus
        entry.bonus = bonus

    def _unindex(self, sid: int, entry: _Entry) -> None:
        for tok in self._terms_of(entry):
            posting = self._postings.get(tok)
            if posting is not None:
                posting.discard(sid)
                if not posting:
                    del self._postings[tok]
                    self._vocab_dirty = True

    def _refresh(self, entry: _Entry) -> None:
        """Recompute IDF-weighted profile and centroid vectors if IDF moved enough."""
        n = self._n_docs
        if entry.n_docs >= 0 and n - entry.n_docs <= self.config.refresh_ratio * entry.n_docs:
            return
        entry.n_docs = n
        entry.pw = {t: w * self.idf(t) for t, w in entry.profile.terms.items()}
        entry.pnorm = math.sqrt(sum(v * v for v in entry.pw.values()))
        entry.pmass = sum(entry.pw.values())
        state = self._states.get(entry.storyline.id)
        if state is not None and state.centroid:
            entry.cw = {t: w * self.idf(t) for t, w in state.centroid.items()}
            entry.cnorm = math.sqrt(sum(v * v for v in entry.cw.values()))
        else:
            entry.cw, entry.cnorm = {}, 0.0

    # -- item text -------------------------------------------------------------

    def _canonical(self, tok: str) -> str:
        """The profile term ``tok`` is a spelling of, or ``tok`` itself."""
        if self._vocab_dirty:
            self._vocab_list = sorted(t for t in self._postings if len(t) >= 2)
            self._canon.clear()  # cached answers may now have better targets
            self._vocab_dirty = False
        hit = self._canon.get(tok)
        if hit is not None:
            return hit
        out = tok
        if (
            tok not in self._postings
            and len(tok) >= self.config.fuzzy_min_length
            and self._vocab_list
        ):
            best = process.extractOne(
                tok, self._vocab_list, scorer=fuzz.ratio, score_cutoff=self.config.fuzzy_cutoff
            )
            if best is not None and len(best[0]) >= self.config.fuzzy_min_length:
                out = best[0]
        if len(self._canon) > 200_000:
            self._canon.clear()  # bounded memory on a long-running bot
        self._canon[tok] = out
        return out

    def _doc(self, item: Item) -> _Doc:
        toks = [self._canonical(t) for t in tokens(f"{item.title} {item.summary}")]
        weights = {
            tok: self.idf(tok) * tf * (_K1 + 1) / (tf + _K1) for tok, tf in Counter(toks).items()
        }
        norm = math.sqrt(sum(v * v for v in weights.values()))
        return _Doc(item.key, item.published, toks, weights, norm, " " + " ".join(toks) + " ")

    # -- scoring -----------------------------------------------------------

    def _pair(self, doc: _Doc, entry: _Entry) -> tuple[float, str]:
        """Word score (before freshness) and reason for one pair with shared terms."""
        cfg = self.config
        prof = entry.profile
        dot = covered = 0.0
        contrib: list[tuple[float, str]] = []
        cdot = 0.0
        for tok, dw in doc.weights.items():
            pw = entry.pw.get(tok)
            if pw:
                dot += pw * dw
                covered += pw
                contrib.append((pw * dw, tok))
            cw = entry.cw.get(tok)
            if cw:
                cdot += cw * dw
        word = 0.0
        if dot > 0 and entry.pnorm and doc.norm:
            cosine = dot / (entry.pnorm * doc.norm)
            coverage = covered / entry.pmass
            word = cfg.coverage_mix * coverage + (1 - cfg.coverage_mix) * cosine
        if cdot > 0 and entry.cnorm and doc.norm:
            # Adaptive part: only ever closes part of the gap to the centroid.
            state = self._states[prof.storyline_id]
            share = min(cfg.max_adapt, cfg.adapt_step * state.matches)
            adapt = cdot / (entry.cnorm * doc.norm)
            word += share * max(0.0, adapt - word)
        if word <= 0:
            return 0.0, ""
        found: list[tuple[Entity, tuple[str, ...]]] = []
        for ent in prof.entities:
            for form in ent.forms:
                if len(form) == 1 and form[0] in TITLE_WORDS:
                    continue
                if (" " + " ".join(form) + " ") in doc.joined:
                    found.append((ent, form))
                    break
        bonus = sum(cfg.entity_bonus * ent.weight for ent, _ in found)
        bonus += cfg.phrase_bonus * sum(
            1 for p in prof.phrases if (" " + " ".join(p) + " ") in doc.joined
        )
        return word + min(cfg.max_bonus, bonus), _explain(found, contrib)

    def _freshness(self, storyline_id: int, when: datetime | None) -> float:
        """Down-weight storylines that have been quiet: news comes in bursts."""
        cfg = self.config
        if when is None or cfg.half_life_days <= 0:
            return 1.0
        state = self._states.setdefault(storyline_id, _State())
        if state.last_active is None:
            state.last_active = when
            return 1.0
        age = (when - state.last_active).total_seconds() / 86400.0
        if age <= 0:
            return 1.0
        decay = math.pow(0.5, age / cfg.half_life_days)
        return cfg.dormant_floor + (1.0 - cfg.dormant_floor) * decay

    def _scan(
        self, items: Sequence[Item], storylines: Sequence[Storyline], *, every_pair: bool
    ) -> list[Assessment]:
        """Score items against storylines; with ``every_pair`` False, return only matches.

        Word overlap is accumulated through the inverted index. In the fast path
        (``every_pair`` False) a storyline whose upper bound cannot reach the
        threshold is skipped before entity and phrase checks.
        """
        cfg = self.config
        entries = [self._entry(s) for s in storylines]
        by_id: dict[int, _Entry] = {}
        for entry in entries:
            self._refresh(entry)
            by_id[entry.storyline.id] = entry
        first_seen = next((i.published for i in items if i.published is not None), None)
        if first_seen is not None:
            for entry in entries:
                # A storyline starts with the first item it is shown.
                state = self._states.setdefault(entry.storyline.id, _State())
                if state.last_active is None:
                    state.last_active = first_seen
        semantic = cfg.semantic.similarities(items, storylines) if cfg.semantic else None
        exhaustive = every_pair or semantic is not None
        out: list[Assessment] = []
        for row, item in enumerate(items):
            doc = self._doc(item)
            dot: dict[int, float] = {}
            cov: dict[int, float] = {}
            cdot: dict[int, float] = {}
            bub: dict[int, float] = {}
            touched: set[int] = set()
            for tok, dw in doc.weights.items():
                posting = self._postings.get(tok)
                if not posting:
                    continue
                for sid in posting:
                    hit = by_id.get(sid)
                    if hit is None:
                        continue
                    touched.add(sid)
                    pw = hit.pw.get(tok)
                    if pw:
                        dot[sid] = dot.get(sid, 0.0) + pw * dw
                        cov[sid] = cov.get(sid, 0.0) + pw
                    if exhaustive:
                        continue
                    cw = hit.cw.get(tok)
                    if cw:
                        cdot[sid] = cdot.get(sid, 0.0) + cw * dw
                    b = hit.bonus.get(tok)
                    if b:
                        bub[sid] = bub.get(sid, 0.0) + b
            for col, entry in enumerate(entries):
                sid = entry.storyline.id
                if sid not in touched:
                    if not exhaustive:
                        continue
                    s, why = 0.0, ""
                else:
                    upper = (
                        self._upper_bound(
                            entry, doc, dot.get(sid, 0.0), cov.get(sid, 0.0),
                            cdot.get(sid, 0.0), bub.get(sid, 0.0),
                        )
                        if not exhaustive and entry.pnorm and doc.norm
                        else 1.0
                    )
                    if upper < cfg.threshold:
                        continue
                    s, why = self._pair(doc, entry)
                if semantic is not None:
                    s = (1 - cfg.semantic_weight) * s + cfg.semantic_weight * semantic[row][col]
                if s > 0:
                    s *= self._freshness(sid, item.published)
                matched = s >= cfg.threshold
                if matched or every_pair:
                    out.append(Assessment(item.key, sid, s, matched, why))
        return out

    def _upper_bound(
        self, entry: _Entry, doc: _Doc, dot: float, cov: float, cdot: float, bonus: float
    ) -> float:
        """The most :meth:`_pair` could give this pair (freshness is at most 1)."""
        cfg = self.config
        word = 0.0
        if dot > 0:
            word = cfg.coverage_mix * cov / entry.pmass + (1 - cfg.coverage_mix) * dot / (
                entry.pnorm * doc.norm
            )
        if cdot > 0 and entry.cnorm:
            state = self._states[entry.storyline.id]
            share = min(cfg.max_adapt, cfg.adapt_step * state.matches)
            word += share * max(0.0, cdot / (entry.cnorm * doc.norm) - word)
        if word <= 0:
            return 0.0
        return word + min(cfg.max_bonus, bonus) + 1e-9

    def score(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        """Score every (item, storyline) pair without observing or learning.

        Returns one :class:`Assessment` per pair, items in order, storylines in
        order within each item.
        """
        return self._scan(items, storylines, every_pair=True)

    def _learn_from(self, result: list[Assessment], items: Sequence[Item]) -> None:
        by_key = {item.key: item for item in items}
        for a in result:
            if a.matched and a.score >= self.config.learn_threshold:
                self.learn(a.storyline_id, by_key[a.item_key])

    def assess(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        """Observe ``items``, score every pair, learn from confident matches."""
        self.observe(items)
        result = self.score(items, storylines)
        self._learn_from(result, items)
        return result

    def match(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Match]:
        """Observe ``items`` and return the pairs over the threshold, with reasons."""
        self.observe(items)
        result = self._scan(items, storylines, every_pair=False)
        self._learn_from(result, items)
        return [Match(a.item_key, a.storyline_id, a.score, a.reason) for a in result]

    def learn(self, storyline_id: int, item: Item) -> None:
        """Adaptive tracking: add a confidently matched item to the storyline's centroid.

        Bounded: the centroid keeps its ``max_learned_terms`` heaviest terms, and
        it can only close ``max_adapt`` of the gap between the seed score and
        its own similarity, so the storyline cannot drift away from its seed.
        """
        entry = self._entries.get(storyline_id)
        if entry is None:
            return
        cfg = self.config
        state = self._states.setdefault(storyline_id, _State())
        self._unindex(storyline_id, entry)
        state.matches += 1
        if item.published is not None and (
            state.last_active is None or item.published > state.last_active
        ):
            state.last_active = item.published
        counts = Counter(self._canonical(t) for t in tokens(f"{item.title} {item.summary}"))
        norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
        for tok in sorted(counts):
            state.centroid[tok] = state.centroid.get(tok, 0.0) + counts[tok] / norm
        if len(state.centroid) > cfg.max_learned_terms:
            heaviest = sorted(state.centroid.items(), key=lambda kv: (-kv[1], kv[0]))
            state.centroid = dict(heaviest[: cfg.max_learned_terms])
        self._index(storyline_id, entry)


def _explain(found: list[tuple[Entity, tuple[str, ...]]], contrib: list[tuple[float, str]]) -> str:
    """A short readable reason: entities (with the alias seen) then strongest terms."""
    parts: list[str] = []
    covered: set[str] = set()
    for ent, form in found:
        alias = next((a for a in ent.aliases if tuple(tokens(a)) == form), ent.aliases[0])
        parts.append(ent.name if alias == ent.name else f"{ent.name} ~ {alias}")
        covered.update(t for f in ent.forms for t in f)
    for _, tok in sorted(contrib, reverse=True):
        if tok not in covered and len(parts) < 6:
            parts.append(tok)
            covered.add(tok)
    return "; ".join(parts)


def match(items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Match]:
    """Match ``items`` against ``storylines`` with a fresh default :class:`Matcher`."""
    return Matcher().match(items, storylines)
