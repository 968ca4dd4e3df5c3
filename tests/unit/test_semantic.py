"""Tests for bot/storylines/semantic.py, the optional MiniLM embedder and scorer.

Without the ``semantic`` extra only the import and "unavailable" paths run; the
rest is skipped with the reason. With it, both encoders (the float32 numpy
network and the int8 one of bot/storylines/minilm_int8.py) are checked against
vectors that sentence-transformers on torch computed for the same weights
(tests/fixtures/minilm_reference.json, made by bench/make_minilm_reference.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.models import Item, Storyline
from bot.storylines import semantic
from bot.storylines.matcher import MatcherConfig
from bot.storylines.semantic import (
    DIM,
    MiniLMEmbedder,
    ModelChecksumError,
    SemanticScorer,
    SemanticUnavailable,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_reference.json"

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None
needs_numpy = pytest.mark.skipif(
    not HAVE_NUMPY, reason="numpy not installed (pip install 'storywatch[semantic]')"
)


@pytest.fixture(scope="module", params=["float32", "int8"])
def embedder(request: pytest.FixtureRequest) -> MiniLMEmbedder:
    """Both encoders: the float32 reference network and the int8 one the bot prefers."""
    try:
        if request.param == "int8":
            from bot.storylines.minilm_int8 import Int8MiniLMEmbedder

            return Int8MiniLMEmbedder.load()
        return MiniLMEmbedder.load()
    except SemanticUnavailable as exc:
        pytest.skip(f"semantic extra ({request.param} encoder) not usable here: {exc}")


def _item(key: str, title: str, summary: str = "") -> Item:
    return Item(key=key, title=title, summary=summary, link=None, published=None, source="t")


# -- without the extra ------------------------------------------------------


def test_module_imports_without_loading_numpy() -> None:
    # The core install imports this module; only load() needs the extra.
    assert semantic.DIM == 384
    assert issubclass(SemanticUnavailable, Exception)
    assert issubclass(ModelChecksumError, SemanticUnavailable)


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SemanticUnavailable, match=r"storywatch\[semantic\]"):
        semantic.default_model_dir()
    with pytest.raises(SemanticUnavailable, match="not"):
        MiniLMEmbedder.load()


def test_missing_model_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SemanticUnavailable):
        MiniLMEmbedder.load(tmp_path)


# -- with the extra: against the reference ----------------------------------


def test_matches_reference_vectors(embedder: MiniLMEmbedder) -> None:
    import numpy as np

    ref = json.loads(FIXTURE.read_text(encoding="utf-8"))
    got = embedder.embed(ref["sentences"])
    want = np.asarray(ref["vectors"], dtype=np.float64)
    assert got.shape == (len(ref["sentences"]), DIM)
    assert got.dtype == np.float32
    cos = (got * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    for sentence, c in zip(ref["sentences"], cos, strict=True):
        assert c >= 0.999, (sentence[:40], float(c))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_same_vector_alone_or_in_a_padded_batch(embedder: MiniLMEmbedder) -> None:
    import numpy as np

    texts = [
        "Short one",
        "A somewhat longer headline about the refugee crisis at the Hungarian border",
        "x",
        " ".join(["Much longer text that forces padding on every other row."] * 8),
    ]
    batched = embedder.embed(texts)
    for i, text in enumerate(texts):
        alone = embedder.embed([text])[0]
        assert np.allclose(alone, batched[i], atol=1e-5), text[:30]
    # Order in the batch does not matter either.
    rev = embedder.embed(texts[::-1])[::-1]
    assert np.allclose(rev, batched, atol=1e-5)


def test_empty_input_gives_empty_array(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIM)


def test_long_text_is_truncated_not_rejected(embedder: MiniLMEmbedder) -> None:
    vec = embedder.embed(["word " * 5000])
    assert vec.shape == (1, DIM)


def test_checksum_mismatch_is_a_clear_error(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(ModelChecksumError, match="does not match the pinned") as info:
        MiniLMEmbedder.load(weights_sha256="0" * 64)
    assert info.value.expected == "0" * 64
    assert info.value.actual == semantic.MODEL_SHA256


def test_corrupt_tokenizer_file_fails_its_checksum(
    embedder: MiniLMEmbedder, tmp_path: Path
) -> None:
    src = semantic.default_model_dir()
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes() + b" ")
    with pytest.raises(ModelChecksumError, match=r"tokenizer\.json"):
        MiniLMEmbedder.load(tmp_path)


def test_pinned_checksum_is_that_of_the_installed_weights(embedder: MiniLMEmbedder) -> None:
    data = (semantic.default_model_dir() / "model.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == semantic.MODEL_SHA256


def test_related_texts_score_higher(embedder: MiniLMEmbedder) -> None:
    scorer = SemanticScorer(embedder)
    story = Storyline(id=1, title="Volkswagen emissions scandal")
    items = [
        _item("a", "VW chief resigns over diesel test cheating"),
        _item("b", "Heavy rain floods parts of Bangkok"),
    ]
    (near,), (far,) = scorer.similarities(items, [story])
    assert 0.0 <= far < near <= 1.0


# -- the scorer's caches (a fake embedder counts what is embedded) ----------


class CountingEmbedder:
    """Deterministic unit vectors from a text hash; records every text embedded."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, DIM), dtype=np.float32)

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


@needs_numpy
def test_every_item_is_embedded_once() -> None:
    fake = CountingEmbedder()
    scorer = SemanticScorer(fake)
    stories = [Storyline(id=1, title="A"), Storyline(id=2, title="B")]
    items = [_item("1", "one"), _item("2", "two")]
    first = scorer.similarities(items, stories)
    again = scorer.similarities([*items, _item("3", "three")], stories)
    assert again[:2] == first
    assert sorted(fake.texts) == ["A", "B", "one", "three", "two"]


@needs_numpy
def test_duplicate_items_in_one_call_are_embedded_once() -> None:
    fake = CountingEmbedder()
    scorer = SemanticScorer(fake)
    item = _item("1", "one")
    sims = scorer.similarities([item, item], [Storyline(id=1, title="A")])
    assert sims[0] == sims[1]
    assert fake.texts.count("one") == 1


@needs_numpy
def test_storyline_is_re_embedded_only_when_it_changes() -> None:
    fake = CountingEmbedder()
    scorer = SemanticScorer(fake)
    items = [_item("1", "one")]
    s1 = Storyline(id=7, title="Putin trip to China")
    scorer.similarities(items, [s1])
    scorer.similarities(items, [s1])
    assert fake.texts.count("Putin trip to China") == 1
    s2 = Storyline(id=7, title="Putin trip to China", seed_text="Putin lands in Beijing")
    scorer.similarities(items, [s2])
    assert len(fake.calls) == 3  # re-embedded: the key changed, though the title did not
    scorer.similarities(items, [s2])
    assert len(fake.calls) == 3


@needs_numpy
def test_item_cache_is_a_bounded_lru() -> None:
    fake = CountingEmbedder()
    scorer = SemanticScorer(fake, item_cache_size=2)
    story = [Storyline(id=1, title="S")]
    a, b, c = _item("a", "alpha"), _item("b", "beta"), _item("c", "gamma")
    scorer.similarities([a], story)
    scorer.similarities([b], story)
    scorer.similarities([a], story)  # a is now the most recently used
    scorer.similarities([c], story)  # evicts b, not a
    scorer.similarities([a], story)
    assert fake.texts.count("alpha") == 1
    scorer.similarities([b], story)
    assert fake.texts.count("beta") == 2


@needs_numpy
def test_batch_larger_than_the_cache_still_scores_every_item() -> None:
    fake = CountingEmbedder()
    scorer = SemanticScorer(fake, item_cache_size=1)
    items = [_item(str(i), f"text {i}") for i in range(5)]
    sims = scorer.similarities(items, [Storyline(id=1, title="S")])
    assert len(sims) == 5
    assert len({round(r[0], 6) for r in sims}) > 1


@needs_numpy
def test_similarities_shape_and_range() -> None:
    scorer = SemanticScorer(CountingEmbedder())
    items = [_item(str(i), f"t{i}") for i in range(3)]
    stories = [Storyline(id=i, title=f"s{i}") for i in range(4)]
    sims = scorer.similarities(items, stories)
    assert len(sims) == 3
    assert all(len(row) == 4 and all(0.0 <= x <= 1.0 for x in row) for row in sims)
    assert scorer.similarities(items, []) == [[], [], []]
    assert scorer.similarities([], stories) == []


def test_item_and_storyline_texts() -> None:
    assert semantic.item_text(_item("k", "Title", "Summary")) == "Title. Summary"
    assert semantic.item_text(_item("k", "", "Only summary")) == "Only summary"
    assert semantic.storyline_text(Storyline(id=1, title="T")) == "T"


# -- HybridMatcher (a Matcher) ------------------------------------------------


class _FixedScorer:
    """Cosines given per storyline id, whatever the item."""

    def __init__(self, by_id: dict[int, float]) -> None:
        self.by_id = by_id

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        return [[self.by_id[s.id] for s in storylines] for _ in items]


def test_hybrid_gate_is_per_owner() -> None:
    item = _item("a", "Completely unrelated words here")
    s1 = Storyline(id=1, title="alpha story", owner=1)
    s2 = Storyline(id=2, title="beta story", owner=2)
    s3 = Storyline(id=3, title="gamma story", owner=1)
    scorer: Any = _FixedScorer({1: 0.9, 2: 0.9, 3: 0.5})
    # The margin gate alone (off by default; facets off so that meaning decides here).
    gate = semantic.HybridConfig(margin=0.05)
    words = MatcherConfig(facets=False)
    m = semantic.HybridMatcher(scorer, gate, words)
    found = {f.storyline_id for f in m.match([item], [s1, s2, s3])}
    # Chat 1's best storyline and chat 2's only one; chat 2 does not suppress chat 1.
    assert found == {1, 2}
    # One owner: the tie leaves no storyline a clear winner, so nothing matches.
    shared = [Storyline(id=s.id, title=s.title) for s in (s1, s2, s3)]
    assert semantic.HybridMatcher(scorer, gate, words).match([item], shared) == []
    # By default an item that meets none of a title's facets gets nothing from meaning.
    assert semantic.HybridMatcher(scorer).match([item], [s1, s2, s3]) == []


def test_hybrid_matcher_is_a_matcher_with_reasons() -> None:
    from bot.storylines.matcher import Matcher

    scorer: Any = _FixedScorer({1: 0.8, 2: 0.1})
    m = semantic.HybridMatcher(scorer, lexical=MatcherConfig(facets=False))
    assert isinstance(m, Matcher)
    out = m.assess([_item("a", "x")], [Storyline(id=1, title="t"), Storyline(id=2, title="u")])
    assert [a.matched for a in out] == [True, False]
    assert "meaning 0.80" in out[0].reason
