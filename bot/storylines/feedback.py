"""Feedback that teaches a storyline: the 👍 / 👎 under alerts, and its sensitivity.

Pure logic, applied as an adjustment on the matcher's verdicts (``Matcher.review``),
never inside its scoring:

- 👎 is a negative example (Rocchio-style): a later item whose words *beyond the
  storyline's own title words* resemble a rejected item's loses part of its score,
  in proportion to that resemblance. The title's words are left out of the
  comparison, so the core facets (who, where, what) are never taught away: "Putin
  meets governors in Moscow" rejected under "Putin trip to China" costs the next
  report about governors, not the next report of Putin in Beijing.
- 👍 is a positive example: an item that resembles an accepted one more than a
  rejected one is spared the penalty, and gets a small, capped boost.
- Bounded: an item must resemble a rejected one at least ``floor`` to be touched at
  all, and feedback takes at most ``max_penalty`` of a score, so one 👎 never mutes
  a storyline; only the newest ``max_examples`` examples of each kind count.
- Per storyline only: examples are keyed by storyline id. A shared storyline learns
  only from its admins; another chat's 👎 is a per-chat exclusion
  (:meth:`Steering.excluded_chats`), which drops the alert for that chat alone.
- Sensitivity moves one storyline's threshold within the range the matcher's
  leave-one-out grid measured (0.15 / 0.20 / 0.25, docs/matching.md).

Similarity is the cosine of IDF-weighted word sets (the matcher's own IDF), so a
shared rare word ("governors") counts far more than a shared common one ("says").
docs/matching.md ("Feedback") gives the measured effect (bench/bench_feedback.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

from bot.models import Item, Storyline
from bot.storylines.matcher import Assessment, Matcher
from bot.storylines.text import tokens

# A storyline's threshold by sensitivity. "normal" is the matcher's own threshold
# (0.20, chosen by leave-one-file-out); strict and broad are the neighbours on that
# grid (0.25 and 0.15), the range over which the benchmarks were measured: beyond it
# nothing says what a threshold does.
SENSITIVITIES: dict[str, float | None] = {"strict": 0.25, "normal": None, "broad": 0.15}

IdfFn = Callable[[str], float]


class Scorer(Protocol):
    """The part of the matcher a review needs (``bot.storylines.matcher.Matcher``)."""

    def idf(self, tok: str) -> float: ...

    def score(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[Assessment]: ...


@dataclass(frozen=True, slots=True)
class FeedbackConfig:
    """How strongly feedback acts; defaults measured by bench/bench_feedback.py."""

    weight: float = 2.0
    """Penalty per unit of resemblance to a rejected item (Rocchio's beta)..."""
    support: float = 1.0
    """...less this times the resemblance to an accepted item (gamma)."""
    floor: float = 0.3
    """Resemblance below which a rejected item says nothing about an item."""
    max_penalty: float = 0.9
    """At most this share of a score is taken away, whatever the feedback."""
    boost: float = 0.0
    """Up to this is added to the score of an item resembling an accepted one."""
    max_examples: int = 50
    """Newest examples kept per storyline and kind: bounded memory and effect."""
    raise_bar: float = 0.1
    """Up to this much the storyline's threshold may rise to sit above the scores of
    the items it was told are off story, where that costs fewer accepted items than it
    saves rejected ones (0: off)."""
    miss_cost: float = 2.0
    """In that trade, an accepted item under the bar counts this many rejected ones."""
    centroid: bool = False
    """Compare an item with the centroid of the rejected (accepted) items, Rocchio's
    way, instead of with the nearest one."""


DEFAULT_FEEDBACK = FeedbackConfig()


@dataclass(frozen=True, slots=True)
class Example:
    """One press on an alert: ``verdict`` "up" or "down" on an item's text.

    ``chat_id`` set: a chat's own exclusion (a shared storyline's non-admin follower);
    None: it teaches the storyline itself."""

    storyline_id: int
    verdict: str
    text: str
    chat_id: int | None = None
    score: float | None = None  # the item's score when it was alerted


Bag = frozenset[str]


def words(text: str, core: Bag = frozenset()) -> Bag:
    """The distinct words of ``text`` as the matcher reads them, less ``core``."""
    return frozenset(tokens(text)) - core


def core_words(storyline: Storyline) -> Bag:
    """The storyline's own words (title, aliases, keywords): never taught away."""
    parts = [storyline.title, *storyline.keywords]
    for name, alts in storyline.aliases:
        parts += [name, *alts]
    return frozenset(tokens(" ".join(parts)))


def similarity(a: Bag, b: Bag, idf: IdfFn) -> float:
    """Cosine of the IDF-weighted word sets ``a`` and ``b`` (0 to 1)."""
    if not a or not b:
        return 0.0
    shared = sum(idf(t) ** 2 for t in a & b)
    if shared <= 0:
        return 0.0
    na = math.sqrt(sum(idf(t) ** 2 for t in a))
    nb = math.sqrt(sum(idf(t) ** 2 for t in b))
    return shared / (na * nb) if na > 0 and nb > 0 else 0.0


def centroid_similarity(item: Bag, bags: Iterable[Bag], idf: IdfFn) -> float:
    """Cosine of ``item`` with the mean of the unit IDF-weighted vectors of ``bags``."""
    cent: dict[str, float] = {}
    for bag in bags:
        norm = math.sqrt(sum(idf(t) ** 2 for t in bag))
        if norm <= 0:
            continue
        for t in bag:
            cent[t] = cent.get(t, 0.0) + idf(t) / norm
    if not cent or not item:
        return 0.0
    dot = sum(cent.get(t, 0.0) * idf(t) for t in item)
    na = math.sqrt(sum(idf(t) ** 2 for t in item))
    nc = math.sqrt(sum(w * w for w in cent.values()))
    return dot / (na * nc) if na > 0 and nc > 0 else 0.0


@dataclass(slots=True)
class Steer:
    """What one storyline (or one chat's following of it) was taught."""

    negatives: list[str] = field(default_factory=list)  # item texts, oldest first
    positives: list[str] = field(default_factory=list)
    threshold: float | None = None  # None: the matcher's own
    scores: dict[str, tuple[str, float]] = field(default_factory=dict)  # text -> verdict, score

    def bar(self, base: float, config: FeedbackConfig) -> float:
        """The threshold after feedback: raised (at most ``raise_bar``) just above
        rejected items' scores when that rules out more of them than of accepted ones."""
        if config.raise_bar <= 0 or not self.scores:
            return base
        best, gain = base, 0.0
        marks = sorted(self.scores.values(), key=lambda vs: vs[1])
        for _, s in marks:
            bar = s + 1e-6
            if bar <= base or bar > base + config.raise_bar:
                continue
            cut = sum(1.0 if v == "down" else -config.miss_cost for v, x in marks if x < bar)
            if cut > gain:
                best, gain = bar, cut
        return best

    def add(self, verdict: str, text: str, limit: int, score: float | None = None) -> None:
        if score is not None:
            self.scores[text] = (verdict, score)
            if len(self.scores) > 2 * limit:
                del self.scores[next(iter(self.scores))]
        keep, drop = (self.positives, self.negatives) if verdict == "up" else (
            self.negatives, self.positives)
        if text in drop:
            drop.remove(text)  # a changed mind: the latest press counts
        if text in keep:
            keep.remove(text)
        keep.append(text)
        del keep[:-limit]

    @property
    def taught(self) -> bool:
        return bool(self.negatives or self.positives)


def adjust_score(
    score: float, item: Bag, negatives: Iterable[Bag], positives: Iterable[Bag],
    idf: IdfFn, config: FeedbackConfig = DEFAULT_FEEDBACK,
) -> float:
    """``score`` after feedback: lowered for resembling a rejected item (less its
    resemblance to an accepted one), raised a little for resembling an accepted one;
    never below ``(1 - max_penalty) * score``."""
    if config.centroid:
        neg = centroid_similarity(item, negatives, idf)
        pos = centroid_similarity(item, positives, idf)
    else:
        neg = max((similarity(item, n, idf) for n in negatives), default=0.0)
        pos = max((similarity(item, p, idf) for p in positives), default=0.0)
    out = score
    if neg >= config.floor:
        penalty = config.weight * (neg - config.support * pos)
        out = score * (1.0 - min(config.max_penalty, max(0.0, penalty)))
    if pos >= config.floor and pos > neg and config.boost > 0:
        out += config.boost * pos
    return out


class Steering:
    """Every storyline's feedback and sensitivity, applied to the matcher's verdicts.

    Build one per poll pass from storage (``Database.steering``); install
    :meth:`review` as ``Matcher.review``.
    """

    def __init__(
        self,
        examples: Sequence[Example] = (),
        thresholds: dict[int, float] | None = None,
        config: FeedbackConfig = DEFAULT_FEEDBACK,
    ) -> None:
        self.config = config
        self._steers: dict[int, Steer] = {}
        self._chats: dict[tuple[int, int], Steer] = {}
        for sid, value in (thresholds or {}).items():
            self._steers.setdefault(sid, Steer()).threshold = value
        for ex in examples:
            self.add(ex)
        self._core: dict[int, Bag] = {}
        self._bags: dict[tuple[int, str], Bag] = {}

    def add(self, ex: Example) -> None:
        """Record one more press (the bench's simulated user calls this as it goes)."""
        if ex.chat_id is None:
            steer = self._steers.setdefault(ex.storyline_id, Steer())
        else:
            if ex.verdict != "down":
                return  # a chat's own 👍 on a shared storyline changes nothing it sees
            steer = self._chats.setdefault((ex.storyline_id, ex.chat_id), Steer())
        steer.add(ex.verdict, ex.text, self.config.max_examples, ex.score)

    def set_threshold(self, storyline_id: int, value: float | None) -> None:
        self._steers.setdefault(storyline_id, Steer()).threshold = value

    def install(self, matcher: Matcher, default_threshold: float) -> None:
        """Make ``matcher`` decide with this feedback and these sensitivities (or with
        none, when there are none). A word matcher applies each storyline's own
        threshold in its scan; :meth:`review` does the rest."""
        matcher.review = partial(self.review, matcher, default_threshold) if self else None
        if getattr(matcher, "hybrid", None) is None:  # the hybrid's review sees every pair
            matcher.bars = {sid: st.threshold for sid, st in self._steers.items()
                            if st.threshold is not None}

    def steer(self, storyline_id: int) -> Steer | None:
        return self._steers.get(storyline_id)

    def __bool__(self) -> bool:
        return bool(self._steers or self._chats)

    # -- applying it ----------------------------------------------------------

    def _core_of(self, storyline: Storyline) -> Bag:
        core = self._core.get(storyline.id)
        if core is None:
            core = self._core[storyline.id] = core_words(storyline)
        return core

    def _bag(self, storyline_id: int, text: str, core: Bag) -> Bag:
        key = (storyline_id, text)
        bag = self._bags.get(key)
        if bag is None:
            bag = self._bags[key] = words(text, core)
        return bag

    def adjusted(
        self, steer: Steer, storyline: Storyline, item: Item | Bag, score: float, idf: IdfFn
    ) -> float:
        """``score`` of ``item`` (or its words, from :func:`words`) after ``steer``."""
        if not steer.taught:
            return score
        core = self._core_of(storyline)
        bag = (item if isinstance(item, frozenset)
               else words(f"{item.title} {item.summary}")) - core
        return adjust_score(
            score, bag,
            [self._bag(storyline.id, t, core) for t in steer.negatives],
            [self._bag(storyline.id, t, core) for t in steer.positives],
            idf, self.config,
        )

    def review(
        self,
        matcher: Scorer,
        default_threshold: float,
        items: Sequence[Item],
        storylines: Sequence[Storyline],
        result: list[Assessment],
        every_pair: bool,
    ) -> list[Assessment]:
        """The matcher's verdicts after feedback and sensitivity.

        ``result`` holds every pair (``every_pair``) or only the matches; in the
        latter case a storyline that may match under the matcher's threshold (broad,
        or boosted by 👍) is scored again in full, for these items only."""
        steered = {s.id: s for s in storylines if s.id in self._steers}
        if not steered:
            return result
        if not every_pair:
            wide = [s for s in steered.values()
                    if self._needs_all_pairs(matcher, s.id, default_threshold)]
            if wide:
                ids = {s.id for s in wide}
                order = {item.key: n for n, item in enumerate(items)}
                result = [a for a in result if a.storyline_id not in ids]
                result += matcher.score(items, wide)
                result.sort(key=lambda a: order.get(a.item_key, 0))
        by_key = {item.key: item for item in items}
        bags: dict[str, Bag] = {}  # each item read once, whatever the storylines
        out: list[Assessment] = []
        for a in result:
            storyline = steered.get(a.storyline_id)
            if storyline is None:
                out.append(a)
                continue
            steer = self._steers[a.storyline_id]
            threshold = steer.bar(
                steer.threshold if steer.threshold is not None else default_threshold,
                self.config)
            bag = bags.get(a.item_key)
            if bag is None and steer.taught:
                it = by_key[a.item_key]
                bag = bags[a.item_key] = words(f"{it.title} {it.summary}")
            score = self.adjusted(steer, storyline, bag if bag is not None else by_key[a.item_key],
                                  a.score, matcher.idf)
            # Only pairs the matcher found on story (facets met, or a follow-up) may
            # match; feedback and sensitivity move the bar, never the facets.
            hit = a.facets_ok and score >= threshold
            if hit or every_pair:
                out.append(replace(a, score=score, matched=hit))
        return out

    def _needs_all_pairs(
        self, matcher: Scorer, storyline_id: int, default_threshold: float
    ) -> bool:
        steer = self._steers[storyline_id]
        low = steer.threshold is not None and steer.threshold < default_threshold
        # A matcher that applied the storyline's own threshold in its scan returned
        # its pairs already.
        scanned = getattr(matcher, "bars", {}).get(storyline_id) == steer.threshold
        return (low and not scanned) or (bool(steer.positives) and self.config.boost > 0)

    def excluded_chats(
        self, storyline: Storyline, item: Item, score: float, default_threshold: float,
        idf: IdfFn,
    ) -> set[int]:
        """Chats whose own 👎 on this storyline rules ``item`` out for them alone."""
        out: set[int] = set()
        steer = self._steers.get(storyline.id)
        threshold = default_threshold if steer is None or steer.threshold is None \
            else steer.threshold
        for (sid, chat_id), own in self._chats.items():
            if sid == storyline.id and self.adjusted(own, storyline, item, score, idf) < threshold:
                out.add(chat_id)
        return out

    def has_exclusions(self, storyline_id: int) -> bool:
        return any(sid == storyline_id for sid, _ in self._chats)
