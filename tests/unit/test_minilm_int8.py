"""The int8 encoder (bot/storylines/minilm_int8.py): that it is really int8, that
it checks itself, and that the bot falls back to the float32 model when it cannot
be used. Its vectors against the reference are tested with the float32 model's in
test_semantic.py. Skipped, with the reason, without the semantic extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.storylines import minilm_int8
from bot.storylines.minilm_int8 import Int8MiniLMEmbedder, Int8Unfaithful, load_embedder
from bot.storylines.semantic import MiniLMEmbedder, SemanticScorer, SemanticUnavailable
from tests.support.imports import hide_package

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def int8() -> Int8MiniLMEmbedder:
    try:
        return Int8MiniLMEmbedder.load()
    except SemanticUnavailable as exc:
        pytest.skip(f"int8 encoder not usable here: {exc}")


@pytest.fixture(scope="module")
def float32() -> MiniLMEmbedder:
    try:
        return MiniLMEmbedder.load()
    except SemanticUnavailable as exc:
        pytest.skip(f"semantic extra not installed: {exc}")


def test_int8_is_close_to_float32_but_not_float32(
    int8: Int8MiniLMEmbedder, float32: MiniLMEmbedder
) -> None:
    import numpy as np

    sentences = json.loads(FIXTURE.read_text(encoding="utf-8"))["sentences"]
    cos = (int8.embed(sentences) * float32.embed(sentences)).sum(axis=1)
    assert cos.min() >= 0.999
    # Rounding to int8 moves every vector a little; identical vectors would mean
    # the float32 path ran under the int8 name.
    assert cos.max() < 0.999999
    assert int8.fidelity >= minilm_int8.FAITHFUL
    assert np.isfinite(cos).all()


def test_self_check_refuses_an_unfaithful_encoder(int8: Int8MiniLMEmbedder) -> None:
    # An impossible bar stands for a CPU whose integer kernels stray.
    with pytest.raises(Int8Unfaithful, match="on this CPU"):
        Int8MiniLMEmbedder.load(faithful=1.01)


def test_load_embedder_prefers_int8(int8: Int8MiniLMEmbedder) -> None:
    embedder, why = load_embedder()
    assert isinstance(embedder, Int8MiniLMEmbedder)
    assert why.startswith("int8 encoder") and "fidelity" in why


def test_load_embedder_falls_back_to_float32_when_int8_strays(
    int8: Int8MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(minilm_int8, "FAITHFUL", 1.01)
    embedder, why = load_embedder()
    assert type(embedder) is MiniLMEmbedder
    assert "float32" in why and "on this CPU" in why


def test_load_embedder_falls_back_to_float32_without_onnxruntime(
    float32: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_package(monkeypatch, "onnxruntime")
    embedder, why = load_embedder()
    assert type(embedder) is MiniLMEmbedder
    assert "onnxruntime is not installed" in why


def test_load_embedder_falls_back_when_onnxruntime_cannot_run_the_graph(
    int8: Int8MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Could not find an implementation for Gelu(20) node")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    embedder, why = load_embedder()
    assert type(embedder) is MiniLMEmbedder
    assert "cannot run the int8 encoder" in why and "Gelu(20)" in why


def test_float32_on_request(float32: MiniLMEmbedder) -> None:
    embedder, why = load_embedder(int8=False)
    assert type(embedder) is MiniLMEmbedder
    assert "float32" in why


def test_scorer_load_says_which_encoder(int8: Int8MiniLMEmbedder) -> None:
    scorer = SemanticScorer.load()
    assert isinstance(scorer.embedder, Int8MiniLMEmbedder)
    assert scorer.encoder.startswith("int8 encoder")
