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
4. Adaptive tracking (pseudo-relevance feedback): confident matches build a
   per-storyline centroid; an item close to it gets part of the way towards
   that similarity. The centroid can only add up to ``max_adapt`` of the gap
   and keeps its ``max_learned_terms`` heaviest terms; the profile itself never
   changes, so the seed is never forgotten.
5. Competition: an item is rarely news of several storylines, and false alarms
   cost more than misses; a storyline must score at least ``competition`` times
   the item's best storyline (among those it is shown with the same ``owner``:
   one chat's storylines never suppress another chat's) to match.
6. Adaptive time scale: a storyline's score is discounted by how long it has been
   quiet (since its last match, or since it was first shown if it was seeded with
   text) relative to its own rhythm (median gap between its matches, with a prior);
   a story that moved hourly and went quiet for days needs stronger evidence, one
   that moves every few days is not penalised for a quiet day or two.

Scoring is vectorised with numpy: each term has a posting array of (storyline
slot, profile weight, bonus bound, learned weight); an item's scores against
every storyline are a few ``np.bincount`` calls over the postings of its terms.
Only pairs whose upper bound reaches the threshold get the (Python) entity and
phrase checks. One default configuration, :data:`DEFAULT_CONFIG`, is used
everywhere; docs/matching.md says how each knob was chosen (leave-one-file-out).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress, pairwise
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from bot.models import Item, Match, Storyline
from bot.storylines.facets import (
    CASINGS,
    Casing,
    ItemFacts,
    Query,
    RoleBook,
    Verdict,
    elsewhere,
    explain,
    facet_keys,
    item_keys,
    judge,
    parse_title,
    read_item,
    someone_else,
)
from bot.storylines.knowledge import folded_words
from bot.storylines.profile import Entity, Profile, build_profile
from bot.storylines.reading import reading_of, with_reading
from bot.storylines.text import MAX_TERM_LENGTH, TITLE_WORDS, tokens

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


class SemanticScorer(Protocol):
    """An optional extra signal (e.g. sentence embeddings) blended into word scores."""

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        """Similarity in [0, 1] for every (item, storyline) pair, items first."""
        ...


_SCORE_CELLS = 250_000  # items x storyline slots scored in one set of numpy calls


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Matcher settings. The defaults are the one documented configuration."""

    threshold: float = 0.20
    """A pair whose final score reaches this is a match."""
    facets: bool = True
    """Gate matches on the title's facets (who, where, what: bot.storylines.facets)."""
    facet_mix: float = 0.5
    """Share of the facet coverage in the score of a pair whose facets are met (the rest
    is the word score)."""
    unmet_factor: float = 0.5
    """A pair whose facets are not met keeps this share of its word score (never a match)."""
    hot_hours: float = 24.0
    """A storyline that moved (matched, or was seeded with text) this recently also takes
    items that miss a facet but share at least ``hot_min_terms`` of its terms and reach the
    threshold on words alone: follow-ups of a story in the news. Never needed to match:
    the facets alone always suffice, however long the storyline was quiet (0: off)."""
    hot_min_terms: int = 2
    hot_place_guard: bool = True
    """A follow-up placed elsewhere (the title names a place, the item another) is not
    let through as a follow-up: a visit to Germany is not the next report of one to France."""
    name_min_seen: int = 3
    """A title word is read as a name unless the stream has written it in lower case at
    least this many times and more often than capitalised."""
    coverage_mix: float = 0.9
    """Blend of profile coverage (1.0) and cosine (0.0) in the word score."""
    fuzzy_cutoff: float = 88.0
    """rapidfuzz ``ratio`` a token needs to count as a spelling of a profile term."""
    fuzzy_min_length: int = 5
    """Shorter tokens are never fuzzy-matched: too many short words look alike."""
    entity_bonus: float = 0.10
    """Added per matched entity (times its weight)..."""
    phrase_bonus: float = 0.05
    """...and per key phrase found..."""
    max_bonus: float = 0.15
    """...up to this much in all."""
    learn_threshold: float = 0.25
    """Only matches at least this confident teach the storyline (adaptive tracking)."""
    adapt_step: float = 0.1
    """Each learned item lets the centroid close this much more of the gap..."""
    max_adapt: float = 0.6
    """...up to this share of the gap between the seed score and the centroid's."""
    max_learned_terms: int = 40
    """The centroid keeps only its heaviest terms: bounded memory, no long tail drift."""
    competition: float = 0.0
    """A storyline matches an item only if it scores at least this share of the item's
    best storyline among those it is shown with the same owner (1: only the best, ties
    kept; 0: off). Storylines of different owners (chats) never compete."""
    rhythm_k: float = 0.0
    """Adaptive time scale (0: off). A storyline quiet for ``dt`` since its last match (or
    since it was first shown) has its score multiplied by
    ``rhythm_floor + (1 - rhythm_floor) * 0.5 ** (dt / (rhythm_k * tau))``, where ``tau``
    is its own rhythm: the median of its gaps between matches, with ``rhythm_prior_hours``
    counted as one gap, bounded by ``rhythm_min_hours`` and ``rhythm_max_hours``. A story
    that moved hourly and has gone quiet for days needs stronger evidence; one that moves
    every few days is not penalised for a quiet day."""
    rhythm_prior_hours: float = 24.0
    rhythm_floor: float = 0.2
    rhythm_min_terms: float = 0.0
    """Items sharing at least this many distinct profile terms with the storyline are
    exempt from the time penalty (0: no exemption)."""
    rhythm_min_hours: float = 1.0
    rhythm_max_hours: float = 24.0 * 14
    max_docs: int = 20_000
    """Corpus statistics are halved beyond this many items: bounded memory, recent IDF."""
    max_terms: int = 100_000
    """...and beyond this many distinct terms: a stream of rare words (names, typos,
    other languages) cannot grow them without bound either (about 15 MB at the cap)."""
    refresh_ratio: float = 0.02
    """Cached profile norms are recomputed when the corpus grew by this share."""
    semantic: SemanticScorer | None = None
    """Optional extra scorer; when None, words alone decide."""
    semantic_weight: float = 0.3


DEFAULT_CONFIG = MatcherConfig()

_K1 = 1.2  # BM25 term-frequency saturation
_MAX_CANON = 200_000  # fuzzy-spelling cache entries kept before starting afresh
_STALE_SLACK = 100  # storylines not shown kept before the matcher forgets them
RHYTHM_EVENTS = 9  # last activity times kept per storyline (start, then matches)
_STATE_VERSION = 1  # of export_state(); a state of another version is not restored


@dataclass(frozen=True, slots=True)
class Assessment:
    """The matcher's verdict on one (item, storyline) pair."""

    item_key: str
    storyline_id: int
    score: float
    matched: bool
    reason: str
    facets_ok: bool = True
    """Whether the item meets the storyline's facets (always True with facets off)."""
    facets_near: bool = True
    """Whether it meets all but one anchor of them (one anchor and two facets at least)."""


@dataclass(slots=True)
class _Doc:
    """An item's text, processed once."""

    key: str
    toks: list[str]
    weights: dict[str, float]  # BM25-saturated tf x idf
    idfs: dict[str, float]
    norm: float
    joined: str  # " tok tok tok " for phrase lookups


@dataclass(slots=True)
class _State:
    """What the matcher has learned about one storyline."""

    centroid: dict[str, float] = field(default_factory=dict)  # summed unit tf vectors
    matches: int = 0
    times: list[float] = field(default_factory=list)  # first shown, then matches (epoch s)
    tau: float = 0.0  # its rhythm (seconds), from ``times``; 0 until known
    sig: str = ""  # the storyline it was learned for (restored state of an edited one is void)


@dataclass(slots=True)
class _Entry:
    """A storyline with its profile and its slot in the score arrays."""

    storyline: Storyline
    profile: Profile
    slot: int
    # " tok tok " strings of entity forms and phrases, made once for substring checks.
    forms: list[tuple[Entity, tuple[tuple[tuple[str, ...], str], ...]]] = field(
        default_factory=list
    )
    phrases: list[str] = field(default_factory=list)
    query: Query | None = None
    # The title words read as names (in sentence case, in Title Case) when it was made.
    query_names: frozenset[tuple[str, Casing]] | None = None

    def __post_init__(self) -> None:
        for ent in self.profile.entities:
            forms = tuple(
                (f, " " + " ".join(f) + " ")
                for f in ent.forms
                # A bare role word ("president") names nobody.
                if not (len(f) == 1 and f[0] in TITLE_WORDS)
            )
            self.forms.append((ent, forms))
        self.phrases = [" " + " ".join(p) + " " for p in self.profile.phrases]


@dataclass(slots=True)
class _Postings:
    """For one term: the storyline slots that use it, with (raw, before IDF) its profile
    weight, the most entity/phrase bonus it can bring, and its learned centroid weight."""

    slots: IntArray
    weights: FloatArray
    bonus: FloatArray
    learned: FloatArray


def _postings(
    prof: dict[int, float], bonus: dict[int, float], learned: dict[int, float]
) -> _Postings:
    order = list(prof.keys() | bonus.keys() | learned.keys())
    n = len(order)
    return _Postings(
        np.fromiter(order, dtype=np.intp, count=n),
        np.fromiter((prof.get(s, 0.0) for s in order), dtype=np.float64, count=n),
        np.fromiter((bonus.get(s, 0.0) for s in order), dtype=np.float64, count=n),
        np.fromiter((learned.get(s, 0.0) for s in order), dtype=np.float64, count=n),
    )


_EMPTY: dict[int, float] = {}

Review = Callable[[Sequence[Item], Sequence[Storyline], list["Assessment"], bool],
                  list["Assessment"]]
"""A hook given the verdicts of one batch (every pair, or only the matches) that
returns them adjusted: users' feedback and sensitivity (bot.storylines.feedback)."""


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
        self._free_slots: list[int] = []
        self._n_slots = 0
        # Profile side, rebuilt when the set of storylines changes.
        self._index_dirty = True
        self._prof_rows: dict[str, dict[int, float]] = {}
        self._bonus_rows: dict[str, dict[int, float]] = {}
        self._post: dict[str, _Postings] = {}  # term -> all three columns, for bincount
        self._post_dirty: set[str] = set()  # terms whose learned weights changed
        self._flat_slot: IntArray = np.zeros(0, dtype=np.intp)
        self._flat_term: list[str] = []
        self._flat_w: FloatArray = np.zeros(0)
        self._vocab_list: list[str] = []
        self._canon: dict[str, str] = {}
        # Learned side: term -> {slot: weight}, arrays made lazily per term.
        self._cent_rows: dict[str, dict[int, float]] = {}
        self._slot_terms: dict[int, set[str]] = {}  # slot -> its centroid's terms
        # IDF-dependent caches.
        self._norms_at = -1.0
        self._pmass: FloatArray = np.zeros(0)
        self._pnorm: FloatArray = np.zeros(0)
        self._cnorm: FloatArray = np.zeros(0)
        self._share: FloatArray = np.zeros(0)
        self._idf_cache: dict[str, float] = {}
        # How the stream writes words: capitalised mid-sentence or lower case (names).
        self._caps: Counter[str] = Counter()
        self._lows: Counter[str] = Counter()
        self.roles = RoleBook()
        # Applied to each batch's verdicts before the matcher learns from them.
        self.review: Review | None = None
        # A storyline's own threshold where it is not the matcher's (its sensitivity),
        # applied in the scan: the fast path then returns a broad storyline's pairs
        # without a second scan of the batch.
        self.bars: dict[int, float] = {}

    # -- corpus statistics -------------------------------------------------

    def observe(self, items: Sequence[Item]) -> None:
        """Count the items' terms into the IDF statistics."""
        items = _read_once(items)
        self._observe_tokens([_item_tokens(i) for i in items])
        self._read(items, learn=True)

    def _read(self, items: Sequence[Item], *, learn: bool) -> list[ItemFacts]:
        """Read the items' facts; with ``learn``, what they teach about names and offices."""
        facts = [reading_of(i).facts for i in items]
        if learn:
            for f in facts:
                # No name is longer than a term: a hash or a URL's path in a summary
                # would otherwise sit here at up to 1,000 characters a word.
                self._caps.update(_short(f.capitalised))
                self._lows.update(_short(f.lower))
                self.roles.learn(f)
            if len(self._caps) + len(self._lows) > 4 * self.config.max_docs:
                # Bounded like the IDF statistics: halve, dropping what falls to zero.
                for c in (self._caps, self._lows):
                    for w in list(c):
                        c[w] //= 2
                        if not c[w]:
                            del c[w]
        return facts

    def query_of(self, storyline: Storyline) -> Query:
        """What ``storyline``'s title asks for, read with the names the stream knows."""
        return parse_title(storyline.title, storyline.aliases, self.is_name)

    def is_name(self, word: str, casing: Casing = "capital") -> bool:
        """Whether the stream writes ``word`` (folded) as a name, as far as it knows.

        ``casing`` is how the title wrote it. With a capital ("capital"), a word it has
        not seen often is taken at its capital letter. In a Title Case title ("title")
        the capital proves nothing: the stream must have seen it capitalised
        mid-sentence, and more often than not. Typed in lower case ("lower"), a word is
        a name unless the stream writes it in lower case more often than capitalised:
        "blinken" is a name before the stream shows it, "state" is not once it has."""
        low = self._lows.get(word, 0)
        caps = self._caps.get(word, 0)
        if casing == "title":
            return caps >= self.config.name_min_seen and caps >= low
        if casing == "lower":
            return caps >= low
        return low < self.config.name_min_seen or caps >= low

    def _query(self, entry: _Entry) -> Query:
        title_words = set(folded_words(entry.storyline.title))
        names = frozenset(
            (w, c) for w in title_words for c in CASINGS if self.is_name(w, c)
        )
        if entry.query is None or names != entry.query_names:
            entry.query = parse_title(entry.storyline.title, entry.storyline.aliases,
                                      lambda w, c: (w, c) in names)
            first = entry.query_names is None
            entry.query_names = names
            for f in entry.query.facets:
                if f.person is not None:
                    self.roles.watch(f.person)
            if first and entry.storyline.seed_text.strip():
                self.roles.learn(read_item(entry.storyline.seed_text))
        return entry.query

    def _observe_tokens(self, docs: Sequence[Sequence[str]]) -> None:
        for toks in docs:
            # A "word" longer than any word (a URL, base64, a run of CJK no one segmented)
            # is never a storyline's term: counting it costs memory and nothing else.
            self._df.update(set(_short(toks)))
            self._n_docs += 1
        if docs:
            self._idf_cache.clear()
        if self._n_docs > self.config.max_docs or len(self._df) > self.config.max_terms:
            # Halving keeps memory bounded and lets IDF follow the news of the day.
            self._n_docs /= 2
            for tok in list(self._df):
                half = self._df[tok] // 2
                if half:
                    self._df[tok] = half
                else:
                    del self._df[tok]
            self._norms_at = -1.0

    def idf(self, tok: str) -> float:
        """BM25-style IDF from the items observed so far (never negative)."""
        hit = self._idf_cache.get(tok)
        if hit is None:
            df = self._df.get(tok, 0)
            hit = math.log(1.0 + (self._n_docs - df + 0.5) / (df + 0.5))
            self._idf_cache[tok] = hit
        return hit

    # -- state kept across restarts ---------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Everything learned from the stream, JSON-able: term statistics, how words are
        written, offices, and per storyline its learned terms and activity. With
        :meth:`restore_state` a restarted bot (or ``poll --once``) decides as the
        long-running one would."""
        return {
            "version": _STATE_VERSION,
            "n_docs": self._n_docs,
            "df": dict(self._df),
            "caps": dict(self._caps),
            "lows": dict(self._lows),
            "roles": self.roles.export(),
            "watched": [list(p) for p in self.roles.watched],
            "storylines": {
                str(sid): {"centroid": st.centroid, "matches": st.matches,
                           "times": st.times, "sig": st.sig}
                for sid, st in self._states.items()
            },
        }

    def restore_state(self, state: dict[str, Any]) -> bool:
        """Load what :meth:`export_state` wrote; False (nothing changed) if it is not a
        state this version understands."""
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            return False
        try:
            df = Counter({str(k): int(v) for k, v in state["df"].items()})
            caps = Counter({str(k): int(v) for k, v in state["caps"].items()})
            lows = Counter({str(k): int(v) for k, v in state["lows"].items()})
            roles = RoleBook()
            roles.restore(state["roles"])
            roles.watched = {tuple(str(w) for w in p) for p in state["watched"]}
            states = {
                int(sid): _State(
                    centroid={str(t): float(w) for t, w in st["centroid"].items()},
                    matches=int(st["matches"]),
                    times=[float(t) for t in st["times"]],
                    sig=str(st["sig"]),
                )
                for sid, st in state["storylines"].items()
            }
            n_docs = float(state["n_docs"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        for st in states.values():
            st.tau = self._tau(st.times) if st.times else 0.0
        for sid in list(self._entries):
            self.forget(sid)  # profiles are rebuilt, with the restored state, when shown
        self._df, self._n_docs, self._caps, self._lows = df, n_docs, caps, lows
        self.roles = roles
        self._states = states
        self._idf_cache.clear()
        self._norms_at = -1.0
        return True

    # -- storylines ----------------------------------------------------------

    def profile(self, storyline: Storyline) -> Profile:
        """The (cached) profile of ``storyline``; rebuilt if the storyline changed."""
        return self._entry(storyline).profile

    def _entry(self, storyline: Storyline) -> _Entry:
        entry = self._entries.get(storyline.id)
        if entry is not None and entry.storyline == storyline:
            return entry
        if entry is not None:
            # Edited storyline: new profile, learned state starts afresh.
            self._forget_centroid(entry.slot)
            self._states.pop(storyline.id, None)
            slot = entry.slot
        elif self._free_slots:
            slot = self._free_slots.pop()
        else:
            slot = self._n_slots
            self._n_slots += 1
        entry = _Entry(storyline, build_profile(storyline), slot)
        self._entries[storyline.id] = entry
        self._index_dirty = True
        state = self._states.get(storyline.id)
        if state is not None and state.sig and state.sig != _signature(storyline):
            del self._states[storyline.id]  # restored for a storyline since edited
        elif state is not None:
            state.sig = _signature(storyline)
            if state.centroid:
                self._set_centroid(slot, state.centroid)
        return entry

    def _state(self, storyline_id: int) -> _State:
        state = self._states.get(storyline_id)
        if state is None:
            entry = self._entries.get(storyline_id)
            sig = _signature(entry.storyline) if entry is not None else ""
            state = self._states[storyline_id] = _State(sig=sig)
        return state

    def forget(self, storyline_id: int) -> None:
        """Drop a storyline that is no longer tracked (frees its slot and learned state)."""
        entry = self._entries.pop(storyline_id, None)
        if entry is None:
            return
        self._forget_centroid(entry.slot)
        self._states.pop(storyline_id, None)
        self._free_slots.append(entry.slot)
        self._index_dirty = True

    def _rebuild_index(self) -> None:
        """Posting arrays for every profile term and bonus token, and the fuzzy vocabulary."""
        cfg = self.config
        prof: dict[str, dict[int, float]] = {}
        bonus: dict[str, dict[int, float]] = {}
        for entry in self._entries.values():
            slot, p = entry.slot, entry.profile
            for tok, w in p.terms.items():
                prof.setdefault(tok, {})[slot] = w
            # Any entity or phrase found has a token in the item, so summing each
            # one's bonus over its tokens bounds the bonus from above.
            for ent in p.entities:
                for tok in {t for f in ent.forms for t in f}:
                    row = bonus.setdefault(tok, {})
                    row[slot] = row.get(slot, 0.0) + cfg.entity_bonus * ent.weight
            for phrase in p.phrases:
                for tok in set(phrase):
                    row = bonus.setdefault(tok, {})
                    row[slot] = row.get(slot, 0.0) + cfg.phrase_bonus
        self._prof_rows, self._bonus_rows = prof, bonus
        self._post = {}
        self._post_dirty = set(prof) | set(bonus) | set(self._cent_rows)
        flat = [(s, t, w) for t, r in prof.items() for s, w in r.items()]
        self._flat_slot = np.fromiter((s for s, _, _ in flat), dtype=np.intp, count=len(flat))
        self._flat_term = [t for _, t, _ in flat]
        self._flat_w = np.fromiter((w for _, _, w in flat), dtype=np.float64, count=len(flat))
        vocab = sorted(t for t in prof.keys() | bonus.keys() if len(t) >= 2)
        if vocab != self._vocab_list:
            self._vocab_list = vocab
            self._canon.clear()  # cached answers may now have better targets
        self._index_dirty = False
        self._norms_at = -1.0

    def _refresh(self) -> None:
        """Recompute IDF-weighted profile and centroid norms if IDF moved enough."""
        if self._index_dirty:
            self._rebuild_index()
        n = self._n_docs
        if self._norms_at >= 0 and n - self._norms_at <= self.config.refresh_ratio * self._norms_at:
            return
        self._norms_at = n
        size = self._n_slots
        idf = np.fromiter((self.idf(t) for t in self._flat_term), dtype=np.float64,
                          count=len(self._flat_term))
        pw = self._flat_w * idf
        self._pmass = np.bincount(self._flat_slot, pw, minlength=size).astype(np.float64)
        self._pnorm = np.sqrt(np.bincount(self._flat_slot, pw * pw, minlength=size)).astype(
            np.float64
        )
        self._cnorm = np.zeros(size)
        self._share = np.zeros(size)
        cfg = self.config
        for entry in self._entries.values():
            state = self._states.get(entry.storyline.id)
            if state is None or not state.centroid:
                continue
            self._cnorm[entry.slot] = math.sqrt(
                sum((w * self.idf(t)) ** 2 for t, w in state.centroid.items())
            )
            self._share[entry.slot] = min(cfg.max_adapt, cfg.adapt_step * state.matches)

    # -- item text -------------------------------------------------------------

    def _canonical(self, tok: str) -> str:
        """The profile term ``tok`` is a spelling of, or ``tok`` itself."""
        hit = self._canon.get(tok)
        if hit is not None:
            return hit
        out = tok
        if (
            tok not in self._prof_rows
            and tok not in self._bonus_rows
            and len(tok) >= self.config.fuzzy_min_length
            and self._vocab_list
        ):
            best = process.extractOne(
                tok, self._vocab_list, scorer=fuzz.ratio, score_cutoff=self.config.fuzzy_cutoff
            )
            if best is not None and len(best[0]) >= self.config.fuzzy_min_length:
                out = best[0]
        if len(self._canon) > _MAX_CANON:
            self._canon.clear()  # bounded memory on a long-running bot
        self._canon[tok] = out
        return out

    def _doc(self, key: str, raw: Sequence[str]) -> _Doc:
        toks = [self._canonical(t) for t in raw]
        tfs = Counter(toks)
        idfs = {tok: self.idf(tok) for tok in tfs}
        weights = {tok: idfs[tok] * tf * (_K1 + 1) / (tf + _K1) for tok, tf in tfs.items()}
        norm = math.sqrt(sum(v * v for v in weights.values()))
        return _Doc(key, toks, weights, idfs, norm, " " + " ".join(toks) + " ")

    # -- scoring -----------------------------------------------------------

    def _index(self) -> dict[str, _Postings]:
        """Posting arrays, with those of terms whose learned weights changed rebuilt."""
        for tok in self._post_dirty:
            prof = self._prof_rows.get(tok, _EMPTY)
            bonus = self._bonus_rows.get(tok, _EMPTY)
            learned = self._cent_rows.get(tok, _EMPTY)
            if prof or bonus or learned:
                self._post[tok] = _postings(prof, bonus, learned)
            else:
                self._post.pop(tok, None)
        self._post_dirty.clear()
        return self._post

    def _word_scores(
        self, docs: Sequence[_Doc]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per item (rows) and slot (columns): the word score (coverage/cosine blend plus
        adaptive part), the upper bound of the entity/phrase bonus, and the number of
        profile terms shared.

        One concatenation of the batch's postings and four bincounts, whatever the
        number of items, storylines or words: numpy's cost per call is paid per batch.
        """
        cfg = self.config
        size = self._n_slots
        index = self._index()
        posts: list[_Postings] = []
        idfs: list[float] = []
        dws: list[float] = []
        offsets: list[int] = []
        norms = np.zeros(len(docs))
        for row, doc in enumerate(docs):
            if doc.norm <= 0:
                continue
            norms[row] = doc.norm
            for tok, dw in doc.weights.items():
                post = index.get(tok)
                if post is not None:
                    posts.append(post)
                    idfs.append(doc.idfs[tok])
                    dws.append(dw)
                    offsets.append(row * size)
        cells = len(docs) * size
        if not posts:
            zero = np.zeros((len(docs), size))
            return zero, zero, zero
        lengths = [len(p.slots) for p in posts]
        # Each posting's slots, moved to its item's row of the flattened (items, slots).
        slots = np.concatenate([p.slots for p in posts]) + np.repeat(offsets, lengths)
        idf = np.repeat(idfs, lengths)
        dwr = np.repeat(dws, lengths)
        raw_w = np.concatenate([p.weights for p in posts])
        cov_w = raw_w * idf
        shape = (len(docs), size)
        cov = np.bincount(slots, cov_w, minlength=cells).reshape(shape)
        nterms = np.bincount(slots, raw_w > 0, minlength=cells).astype(np.float64).reshape(shape)
        dot = np.bincount(slots, cov_w * dwr, minlength=cells).reshape(shape)
        bonus = np.bincount(slots, np.concatenate([p.bonus for p in posts]),
                            minlength=cells).reshape(shape)
        denom = self._pnorm[None, :] * norms[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = np.where(denom > 0, dot / denom, 0.0)
            coverage = np.where(self._pmass > 0, cov / self._pmass, 0.0)
        word: FloatArray = cfg.coverage_mix * coverage + (1 - cfg.coverage_mix) * cosine
        if self._cent_rows:
            cdot = np.bincount(
                slots, np.concatenate([p.learned for p in posts]) * idf * dwr, minlength=cells
            ).reshape(shape)
            cden = self._cnorm[None, :] * norms[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                adapt = np.where(cden > 0, cdot / cden, 0.0)
            # Adaptive part: only ever closes part of the gap to the centroid.
            word = word + self._share * np.maximum(0.0, adapt - word)
        return word, np.minimum(cfg.max_bonus, bonus).astype(np.float64), nterms

    def _bonus(
        self, doc: _Doc, entry: _Entry
    ) -> tuple[float, list[tuple[Entity, tuple[str, ...]]]]:
        """Exact entity/phrase bonus for one pair, and the entities found (with the form)."""
        cfg = self.config
        found: list[tuple[Entity, tuple[str, ...]]] = []
        joined = doc.joined
        for ent, forms in entry.forms:
            for form, text in forms:
                if text in joined:
                    found.append((ent, form))
                    break
        bonus = sum(cfg.entity_bonus * ent.weight for ent, _ in found)
        bonus += cfg.phrase_bonus * sum(1 for p in entry.phrases if p in joined)
        return min(cfg.max_bonus, bonus), found

    def _scan(
        self,
        items: Sequence[Item],
        raw: Sequence[Sequence[str]],
        facts: Sequence[ItemFacts],
        storylines: Sequence[Storyline],
        *,
        every_pair: bool,
    ) -> list[Assessment]:
        """Score items against storylines; with ``every_pair`` False, return only matches.

        In the fast path (``every_pair`` False, no semantic scorer) a pair whose
        upper bound (exact word score plus the largest bonus its shared tokens
        could bring) is under the threshold is skipped before the entity checks.
        Reasons are written only for pairs that are returned.
        """
        cfg = self.config
        entries = [self._entry(s) for s in storylines]
        if len(self._entries) > 2 * len(entries) + _STALE_SLACK:
            # Storylines no longer passed in (removed by their users) would otherwise keep
            # their profile, postings and learned state for the life of the process.
            shown = {e.storyline.id for e in entries}
            for sid in [sid for sid in self._entries if sid not in shown]:
                self.forget(sid)
        self._refresh()
        cols = np.fromiter((e.slot for e in entries), dtype=np.intp, count=len(entries))
        bars = np.fromiter((self.bars.get(e.storyline.id, cfg.threshold) for e in entries),
                           dtype=np.float64, count=len(entries))
        owners = [e.storyline.owner for e in entries]
        last, tau = self._rhythm(entries, items)
        by_key: dict[str, list[int]] = {}
        # Read once per batch: the stream's statistics do not move within it.
        queries = [self._query(e) for e in entries] if cfg.facets else []
        anchored = np.fromiter((q.has_who or q.has_where for q in queries), dtype=np.bool_,
                               count=len(queries))
        for col, query in enumerate(queries):
            for key in facet_keys(query, self.roles):
                by_key.setdefault(key, []).append(col)
        semantic = cfg.semantic.similarities(items, storylines) if cfg.semantic else None
        exhaustive = every_pair or semantic is not None
        out: list[Assessment] = []
        docs = [self._doc(item.key, raw[row]) for row, item in enumerate(items)]
        # Items scored together, as many as keep each (items, slots) array near 2 MB.
        chunk = max(1, _SCORE_CELLS // max(1, self._n_slots))
        for row, item in enumerate(items):
            if row % chunk == 0:
                word_rows, bub_rows, nterms_rows = self._word_scores(docs[row : row + chunk])
            doc = docs[row]
            k = row % chunk
            word_all, bub_all, nterms_all = word_rows[k], bub_rows[k], nterms_rows[k]
            word = word_all[cols]
            fresh = self._freshness(item, last, tau)
            hot = self._hot(item, last)
            if cfg.rhythm_min_terms > 0:
                # Broad lexical evidence (several of the storyline's terms) is not
                # asked for more after a quiet spell; a single shared word is.
                fresh = np.where(nterms_all[cols] >= cfg.rhythm_min_terms, 1.0, fresh)
            if cfg.facets:
                # Facets can be met by other names than the title's words ("Beijing" for
                # China, "the Treasury secretary" for Yellen): pairs sharing a word, and
                # pairs whose facets share a place, a name or an office, are judged.
                # A title that names someone or somewhere needs one of them in the item:
                # only pairs sharing such a key are judged, besides follow-ups of a story
                # that moved (which may miss a facet) and titles with no anchor.
                keys = item_keys(facts[row])
                keys.update("w:" + t for t in doc.toks)  # names as the fuzzy reading spells them
                extra = {c for k in keys for c in by_key.get(k, ())}
                extra.update(np.flatnonzero((word > 0) & (hot | ~anchored)).tolist())
                todo = np.fromiter(sorted(extra), dtype=np.intp, count=len(extra))
            elif exhaustive:
                todo = np.flatnonzero(word > 0)
            else:
                todo = np.flatnonzero(
                    (word > 0) & ((word + bub_all[cols]) * fresh + 1e-9 >= bars)
                )
            scores: dict[int, float] = {}
            found: dict[int, list[tuple[Entity, tuple[str, ...]]]] = {}
            verdicts: dict[int, Verdict] = {}
            for col in todo.tolist():
                b, found[col] = self._bonus(doc, entries[col])
                base = (float(word[col]) + b) * float(fresh[col])
                if cfg.facets:
                    query = queries[col]
                    # Only a pair that may pass, or may be a follow-up, needs the detail.
                    v = judge(query, facts[row], self.roles,
                              quick=not exhaustive and not hot[col])
                    if v.ok:
                        base = (1 - cfg.facet_mix) * base + cfg.facet_mix * v.coverage
                    elif (hot[col] and nterms_all[cols[col]] >= cfg.hot_min_terms
                          and not (cfg.hot_place_guard and (
                              elsewhere(query, v, facts[row])
                              or someone_else(query, v, facts[row], self.roles)))):
                        v = Verdict(True, v.satisfied, v.coverage, hot=True, near=True)
                    else:
                        base *= cfg.unmet_factor
                    verdicts[col] = v
                scores[col] = base
            if semantic is not None:
                sem = semantic[row]
                for col in range(len(entries)):
                    scores[col] = ((1 - cfg.semantic_weight) * scores.get(col, 0.0)
                                   + cfg.semantic_weight * sem[col])
            # Competition: an item is rarely news of many storylines at once. It is
            # among one owner's storylines only: one chat's storyline must not take an
            # item from another chat's (shared storylines form one group, owner None).
            best: dict[int | None, float] = {}
            for col, sc in scores.items():
                own = owners[col]
                if sc > best.get(own, 0.0):
                    best[own] = sc
            for col in range(len(entries)) if every_pair else sorted(scores):
                s = scores.get(col, 0.0)
                hit = s >= max(float(bars[col]), cfg.competition * best.get(owners[col], 0.0))
                verdict = verdicts.get(col)
                if verdict is not None and not verdict.ok:
                    hit = False
                if not hit and not every_pair:
                    continue
                if verdict is not None and verdict.ok:
                    why = explain(verdict)
                else:
                    why = self._reason(doc, entries[col], found.get(col, [])) if s > 0 else ""
                # A pair never judged shared nothing with the title: its facets are unmet.
                judged = verdict is not None or not cfg.facets
                out.append(Assessment(item.key, entries[col].storyline.id, s, hit, why,
                                      judged and (verdict is None or verdict.ok),
                                      judged and (verdict is None or verdict.near)))
        return out

    def _rhythm(
        self, entries: Sequence[_Entry], items: Sequence[Item]
    ) -> tuple[FloatArray, FloatArray]:
        """Per shown storyline: time of its last activity and its rhythm (seconds).

        A storyline seeded with a news report is first active when that report appeared
        (``Storyline.seeded_at``); any other, at its first match."""
        n = len(entries)
        if not self._tracks_time():
            return np.zeros(n), np.zeros(n)
        last = np.zeros(n)
        tau = np.zeros(n)
        for col, entry in enumerate(entries):
            state = self._states.get(entry.storyline.id)
            if state is None:
                state = self._state(entry.storyline.id)
            if not state.times:
                seeded = entry.storyline.seeded_at
                if seeded is None:
                    # A title, or a background document, is not an event: the clock
                    # starts at the storyline's first match.
                    continue
                state.times.append(seeded.timestamp())
                state.tau = self._tau(state.times)
            last[col] = state.times[-1]
            tau[col] = state.tau
        return last, tau

    def _tau(self, times: Sequence[float]) -> float:
        cfg = self.config
        gaps = [b - a for a, b in pairwise(times)]
        gaps.append(cfg.rhythm_prior_hours * 3600.0)
        gaps.sort()
        mid = len(gaps) // 2
        med = gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
        return min(cfg.rhythm_max_hours, max(cfg.rhythm_min_hours, med / 3600.0)) * 3600.0

    def _hot(self, item: Item, last: FloatArray) -> npt.NDArray[np.bool_]:
        """Per shown storyline: whether it moved within ``hot_hours`` before ``item``."""
        hours = self.config.hot_hours
        if hours <= 0 or item.published is None:
            return np.zeros(len(last), dtype=np.bool_)
        # Either side of the activity: a report from just before the seed is as much the
        # same news as one just after; one from a year before is not.
        dt = np.abs(item.published.timestamp() - last)
        out: npt.NDArray[np.bool_] = (last > 0) & (dt <= hours * 3600.0)
        return out

    def _tracks_time(self) -> bool:
        return self.config.rhythm_k > 0 or self.config.hot_hours > 0

    def _freshness(self, item: Item, last: FloatArray, tau: FloatArray) -> FloatArray:
        """Score multiplier per shown storyline from its quiet time relative to its rhythm."""
        cfg = self.config
        if cfg.rhythm_k <= 0 or item.published is None:
            return np.ones(len(last))
        dt = np.maximum(0.0, item.published.timestamp() - last)
        with np.errstate(divide="ignore", invalid="ignore"):
            decay = np.where(tau > 0, np.exp2(-dt / (cfg.rhythm_k * np.maximum(tau, 1.0))), 1.0)
        out: FloatArray = cfg.rhythm_floor + (1 - cfg.rhythm_floor) * decay
        return out

    def freshness(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        """Per item and storyline, the factor (``rhythm_floor`` to 1) that the
        storyline's quiet time, against its own rhythm, puts on a score for that item.

        The word scores of :meth:`score` carry it already; a matcher that adds
        another signal (the semantic one) applies it to that signal too, so a
        storyline long quiet for its rhythm needs stronger evidence whichever
        signal brings it. Items with no time get 1.
        """
        last, tau = self._rhythm([self._entry(s) for s in storylines], items)
        return [self._freshness(item, last, tau).tolist() for item in items]

    def note_activity(self, storyline_id: int, item: Item) -> None:
        """Record that ``item`` moved the storyline: its rhythm follows the matches
        actually made. :meth:`assess` and :meth:`match` call it for their own
        matches; a subclass that decides matches itself calls it for those."""
        if not self._tracks_time() or item.published is None:
            return
        state = self._state(storyline_id)
        t = item.published.timestamp()
        if state.times and t <= state.times[-1]:
            # Same moment (feeds that date items by the day give many) or out of order:
            # a burst is one activity, not evidence that the story moves every second.
            return
        state.times.append(t)
        del state.times[:-RHYTHM_EVENTS]
        state.tau = self._tau(state.times)

    def _reason(
        self, doc: _Doc, entry: _Entry, found: list[tuple[Entity, tuple[str, ...]]]
    ) -> str:
        contrib = [
            (w * doc.weights[t], t) for t, w in entry.profile.terms.items() if t in doc.weights
        ]
        return _explain(found, contrib)

    def score(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        """Score every (item, storyline) pair without observing or learning.

        Returns one :class:`Assessment` per pair, items in order, storylines in
        order within each item.
        """
        items = _read_once(items)
        facts = self._read(items, learn=False)
        return self._scan(items, [_item_tokens(i) for i in items], facts, storylines,
                          every_pair=True)

    def _learn_from(
        self, result: list[Assessment], items: Sequence[Item], raw: Sequence[Sequence[str]]
    ) -> None:
        by_key = {item.key: toks for item, toks in zip(items, raw, strict=True)}
        by_item = {item.key: item for item in items}
        for a in result:
            if a.matched:
                self.note_activity(a.storyline_id, by_item[a.item_key])
            if a.matched and a.score >= self.config.learn_threshold:
                self._learn_tokens(a.storyline_id, by_key[a.item_key])

    def assess(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        """Observe ``items``, score every pair, learn from confident matches."""
        items = _read_once(items)
        raw = [_item_tokens(i) for i in items]
        self._observe_tokens(raw)
        facts = self._read(items, learn=True)
        result = self._scan(items, raw, facts, storylines, every_pair=True)
        if self.review is not None:
            result = self.review(items, storylines, result, True)
        self._learn_from(result, items, raw)
        return result

    def match(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Match]:
        """Observe ``items`` and return the pairs over the threshold, with reasons."""
        items = _read_once(items)
        raw = [_item_tokens(i) for i in items]
        self._observe_tokens(raw)
        facts = self._read(items, learn=True)
        result = self._scan(items, raw, facts, storylines, every_pair=False)
        if self.review is not None:
            result = self.review(items, storylines, result, False)
        self._learn_from(result, items, raw)
        return [Match(a.item_key, a.storyline_id, a.score, a.reason) for a in result]

    # -- adaptive tracking ----------------------------------------------------

    def learn(self, storyline_id: int, item: Item) -> None:
        """Adaptive tracking: add a confidently matched item to the storyline's centroid.

        Bounded: the centroid keeps its ``max_learned_terms`` heaviest terms, and
        it can only close ``max_adapt`` of the gap between the seed score and
        its own similarity; the seed profile itself is never changed.
        """
        self._learn_tokens(storyline_id, _item_tokens(item))

    def _learn_tokens(self, storyline_id: int, raw: Sequence[str]) -> None:
        entry = self._entries.get(storyline_id)
        if entry is None:
            return
        cfg = self.config
        state = self._state(storyline_id)
        state.matches += 1
        counts = Counter(self._canonical(t) for t in raw)
        norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
        for tok in sorted(counts):
            state.centroid[tok] = state.centroid.get(tok, 0.0) + counts[tok] / norm
        if len(state.centroid) > cfg.max_learned_terms:
            heaviest = sorted(state.centroid.items(), key=lambda kv: (-kv[1], kv[0]))
            state.centroid = dict(heaviest[: cfg.max_learned_terms])
        self._set_centroid(entry.slot, state.centroid)
        if self._norms_at >= 0 and len(self._cnorm) > entry.slot:
            self._cnorm[entry.slot] = math.sqrt(
                sum((w * self.idf(t)) ** 2 for t, w in state.centroid.items())
            )
            self._share[entry.slot] = min(cfg.max_adapt, cfg.adapt_step * state.matches)

    def _forget_centroid(self, slot: int) -> None:
        self._set_centroid(slot, {})

    def _set_centroid(self, slot: int, centroid: dict[str, float]) -> None:
        old = self._slot_terms.pop(slot, set())
        for tok in old - set(centroid):
            row = self._cent_rows[tok]
            del row[slot]
            self._post_dirty.add(tok)
            if not row:
                del self._cent_rows[tok]
        if centroid:
            self._slot_terms[slot] = set(centroid)
        for tok, w in centroid.items():
            row = self._cent_rows.setdefault(tok, {})
            if row.get(slot) != w:
                row[slot] = w
                self._post_dirty.add(tok)


def _signature(storyline: Storyline) -> str:
    """What a storyline's learned state depends on: its title, seed, aliases, keywords."""
    text = repr((storyline.title, storyline.seed_text, storyline.aliases, storyline.keywords))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _short(words: Collection[str]) -> Iterator[str]:
    """The words of ``words`` no longer than a counted term (``MAX_TERM_LENGTH``), in
    the order ``words`` gives them (it is read twice, so not a one-shot iterator)."""
    return compress(words, map(MAX_TERM_LENGTH.__ge__, map(len, words)))


def _item_tokens(item: Item) -> Sequence[str]:
    return reading_of(item).tokens


def _read_once(items: Sequence[Item]) -> Sequence[Item]:
    """The items, each carrying its whole reading, so that each is read once, not once
    per use: the parse worker's items come with their facts alone (the tokens are
    read here), and items made elsewhere (evaluation, tests, previews) with nothing."""
    if all(i.reading is not None for i in items):
        return items
    return [i if i.reading is not None else with_reading(i) for i in items]


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
