"""The storyline matcher: scores new items against storyline profiles and explains why.

How it decides (details and measured figures in docs/matching.md):

1. Text is processed once per item: folded, tokenised, lightly stemmed,
   demonyms mapped to places ("Russian" -> "russia"). Tokens that are not in
   any profile's vocabulary are fuzzy-matched once against it with rapidfuzz
   (spellings, transliterations) and the answer is cached.
2. Relevance is a BM25-weighted cosine between the item and the storyline's
   weighted terms, with IDF from every item the matcher has observed.
3. Entities gate and boost: a storyline with named entities only matches an
   item that mentions one of them (under any alias), and every entity or key
   phrase found adds evidence.
4. Confident matches teach the storyline new terms (adaptive tracking), capped
   so that learned terms never outweigh the seed.

One default configuration, :data:`DEFAULT_CONFIG`, is used everywhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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

    threshold: float = 0.25
    """A pair whose final score reaches this is a match."""
    learn_threshold: float = 0.40
    """Only matches at least this confident teach the storyline new terms."""
    fuzzy_cutoff: float = 88.0
    """rapidfuzz ``ratio`` a token needs to count as a spelling of a profile term."""
    fuzzy_min_length: int = 5
    """Shorter tokens are never fuzzy-matched: too many short words look alike."""
    entity_gate: bool = True
    """Storylines with entities need one of them mentioned to match."""
    entity_bonus: float = 0.10
    """Added per matched entity (weighted), up to ``max_bonus`` in all."""
    phrase_bonus: float = 0.05
    max_bonus: float = 0.25
    learn_rate: float = 0.2
    """Weight of one learned item's terms relative to the seed's top weight."""
    max_learned_terms: int = 30
    max_learned_mass: float = 0.5
    """Learned terms may carry at most this share of the profile's total weight."""
    max_docs: int = 20_000
    """Corpus statistics are halved beyond this many items: bounded memory, recent IDF."""
    semantic: SemanticScorer | None = None
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
    """An item's text, processed once."""

    key: str
    toks: list[str]
    tf: Counter[str]
    joined: str  # " tok tok tok " for phrase lookups


@dataclass(slots=True)
class _Learned:
    terms: Counter[str] = field(default_factory=Counter)
    matches: int = 0


class Matcher:
    """Scores items against storylines; keeps corpus statistics and learned terms."""

    def __init__(self, config: MatcherConfig | None = None) -> None:
        self.config = config or DEFAULT_CONFIG
        self._df: Counter[str] = Counter()
        self._n_docs = 0.0
        self._profiles: dict[int, tuple[Storyline, Profile]] = {}
        self._learned: dict[int, _Learned] = {}
        self._vocab: set[str] = set()
        self._vocab_list: list[str] = []
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

    # -- profiles ----------------------------------------------------------

    def profile(self, storyline: Storyline) -> Profile:
        """The (cached) profile of ``storyline``; rebuilt if the storyline changed."""
        cached = self._profiles.get(storyline.id)
        if cached is not None and cached[0] == storyline:
            return cached[1]
        prof = build_profile(storyline)
        self._profiles[storyline.id] = (storyline, prof)
        new_vocab = set(prof.terms) | prof.entity_tokens()
        if not new_vocab <= self._vocab:
            self._vocab |= new_vocab
            self._vocab_list = sorted(self._vocab)
            self._canon.clear()  # cached fuzzy answers may now have better targets
        return prof

    def _canonical(self, tok: str) -> str:
        """The profile term ``tok`` is a spelling of, or ``tok`` itself."""
        hit = self._canon.get(tok)
        if hit is not None:
            return hit
        out = tok
        if (
            tok not in self._vocab
            and len(tok) >= self.config.fuzzy_min_length
            and self._vocab_list
        ):
            best = process.extractOne(
                tok,
                self._vocab_list,
                scorer=fuzz.ratio,
                score_cutoff=self.config.fuzzy_cutoff,
            )
            if best is not None and len(best[0]) >= self.config.fuzzy_min_length:
                out = best[0]
        self._canon[tok] = out
        return out

    def _doc(self, item: Item) -> _Doc:
        toks = [self._canonical(t) for t in tokens(f"{item.title} {item.summary}")]
        return _Doc(item.key, toks, Counter(toks), " " + " ".join(toks) + " ")

    # -- scoring -----------------------------------------------------------

    def _weights(self, prof: Profile) -> dict[str, float]:
        """Profile term weights including what the storyline has learned."""
        learned = self._learned.get(prof.storyline_id)
        if learned is None or not learned.terms:
            return dict(prof.terms)
        out = dict(prof.terms)
        for tok, w in learned.terms.items():
            out[tok] = out.get(tok, 0.0) + w
        return out

    def _assess(self, doc: _Doc, prof: Profile) -> tuple[float, str]:
        cfg = self.config
        weights = self._weights(prof)
        dot = 0.0
        pnorm = 0.0
        contrib: list[tuple[float, str]] = []
        for tok, w in weights.items():
            idf = self.idf(tok)
            pw = w * idf
            pnorm += pw * pw
            tf = doc.tf.get(tok)
            if tf:
                dw = idf * tf * (_K1 + 1) / (tf + _K1)
                dot += pw * dw
                contrib.append((pw * dw, tok))
        if dot <= 0.0:
            return 0.0, ""
        dnorm = 0.0
        for tok, tf in doc.tf.items():
            dw = self.idf(tok) * tf * (_K1 + 1) / (tf + _K1)
            dnorm += dw * dw
        cosine = dot / math.sqrt(pnorm * dnorm) if pnorm and dnorm else 0.0

        found: list[tuple[Entity, tuple[str, ...]]] = []
        for ent in prof.entities:
            for form in ent.forms:
                if all(t in TITLE_WORDS for t in form) and len(form) == 1:
                    continue
                if (" " + " ".join(form) + " ") in doc.joined:
                    found.append((ent, form))
                    break
        if cfg.entity_gate and prof.entities and not found:
            return 0.0, ""
        bonus = sum(cfg.entity_bonus * ent.weight for ent, _ in found)
        phrases = [p for p in prof.phrases if (" " + " ".join(p) + " ") in doc.joined]
        bonus += cfg.phrase_bonus * len(phrases)
        score = cosine + min(cfg.max_bonus, bonus)
        return score, _explain(found, contrib)

    def score(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[Assessment]:
        """Score every (item, storyline) pair without observing or learning."""
        profs = [self.profile(s) for s in storylines]
        out: list[Assessment] = []
        for item in items:
            doc = self._doc(item)
            for prof in profs:
                s, why = self._assess(doc, prof)
                out.append(
                    Assessment(item.key, prof.storyline_id, s, s >= self.config.threshold, why)
                )
        return out

    def assess(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[Assessment]:
        """Observe ``items``, score every pair, learn from confident matches."""
        self.observe(items)
        result = self.score(items, storylines)
        by_key = {item.key: item for item in items}
        for a in result:
            if a.matched and a.score >= self.config.learn_threshold:
                self.learn(a.storyline_id, by_key[a.item_key])
        return result

    def match(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Match]:
        """Observe ``items`` and return the pairs over the threshold, with reasons."""
        return [
            Match(a.item_key, a.storyline_id, a.score, a.reason)
            for a in self.assess(items, storylines)
            if a.matched
        ]

    def learn(self, storyline_id: int, item: Item) -> None:
        """Adaptive tracking: fold a confidently matched item's terms into the storyline.

        Bounded twice so the storyline cannot drift from its seed: only the top
        ``max_learned_terms`` learned terms are kept, and their total weight is
        capped at ``max_learned_mass`` of the whole profile.
        """
        cached = self._profiles.get(storyline_id)
        if cached is None:
            return
        prof = cached[1]
        cfg = self.config
        state = self._learned.setdefault(storyline_id, _Learned())
        state.matches += 1
        doc = self._doc(item)
        top = max(prof.terms.values(), default=1.0)
        for tok in set(doc.toks):
            state.terms[tok] += cfg.learn_rate * top
        if len(state.terms) > cfg.max_learned_terms:
            state.terms = Counter(dict(state.terms.most_common(cfg.max_learned_terms)))
        base = sum(prof.terms.values())
        mass = sum(state.terms.values())
        limit = cfg.max_learned_mass / (1.0 - cfg.max_learned_mass) * base
        if mass > limit > 0:
            factor = limit / mass
            for tok in state.terms:
                state.terms[tok] *= factor


def _explain(found: list[tuple[Entity, tuple[str, ...]]], contrib: list[tuple[float, str]]) -> str:
    """A short readable reason: entities (with the alias seen) then strongest terms."""
    parts: list[str] = []
    covered: set[str] = set()
    for ent, form in found:
        alias = next(
            (a for a in ent.aliases if tuple(tokens(a)) == form), ent.aliases[0]
        )
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


__all__ = [
    "DEFAULT_CONFIG",
    "Assessment",
    "Matcher",
    "MatcherConfig",
    "SemanticScorer",
    "match",
    "replace",
]
