"""The fast encoder of the semantic extra: MiniLM's linear maps in int8 on onnxruntime.

The float32 network in :mod:`bot.storylines.semantic` is bounded by its matrix
products (~21 MFLOP per token, ~3,300 tokens/s on one core here), too slow for
200 one-sentence items a second. This module builds, at load time and from the
same checked weights, an ONNX graph of the same six layers in which the four
linear maps of each layer multiply in int8, and runs it on one thread.

How it stays within cosine 0.999 of the reference vectors
(tests/unit/test_semantic.py runs both encoders against them):

- weights: int8, symmetric, one scale per output column;
- activations: uint8, one scale and zero point **per token** (per row), so a
  text's vector never depends on which other texts share its batch;
- outlier channels: BERT's activations have a few channels far larger than
  the rest, which would take a per-row scale's whole range. For each linear
  map the ``outliers`` largest channels, found by running the float32 network
  on :data:`CALIBRATION` (fixed sentences written for this, not benchmark
  text), stay in float32 and are multiplied apart (LLM.int8's decomposition);
- a self-check at load (:data:`FAITHFUL`): integer kernels differ by CPU, so
  where this one strays, :func:`load_embedder` falls back to float32.

Embedding lookup, attention scores and softmax, LayerNorm, GELU and pooling
stay float32. Nothing is written to disk: the graph is serialised in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.storylines.semantic import (
    _HEADS,
    _LAYERS,
    _LN_EPS,
    DIM,
    INSTALL_HINT,
    MiniLMEmbedder,
    Observer,
    SemanticUnavailable,
)

if TYPE_CHECKING:
    from bot.storylines.semantic import Array

OUTLIERS = 16
"""Input channels of each linear map kept in float32. Measured here, least cosine
to the reference vectors / wcep items per second: 8 channels 0.99897 / 251,
16 channels 0.99911 / 237, 32 channels 0.99925 / 223 (the least is always the
empty text, two special tokens and nothing to average errors over)."""

CALIBRATION: tuple[str, ...] = (
    "The foreign minister arrived in the capital for two days of talks on trade and security.",
    "Shares fell sharply on Monday after the company warned that profits would miss forecasts.",
    "Thousands of people were evacuated as the river burst its banks after a week of rain.",
    "The president signed the bill into law despite protests outside parliament.",
    "Scientists say the new vaccine cut hospital admissions by more than half in trials.",
    "Police arrested three men in connection with the robbery of a jewellery shop.",
    "The central bank raised interest rates for the fourth time this year.",
    "Rebels claimed control of the northern town after days of fighting with the army.",
    "The striker scored twice as the home side won the cup final.",
    "An earthquake of magnitude 6.1 shook the coast; no damage was reported.",
    "Talks between the two leaders ended without an agreement on the disputed border.",
    "Oil prices rose to their highest level in six months.",
    "Le gouvernement annonce une réforme des retraites.",
    "Die Regierung kündigt neue Maßnahmen gegen die Inflation an.",
    "Москва и Пекин обсуждают новые энергетические проекты.",
    "Breaking: airport closed",
    "Election results",
    "Why the summit matters, and what comes next?",
    "Apple unveils a new phone; analysts are unimpressed.",
    "UN agency says 2 million displaced by drought in East Africa",
)
"""Sentences the float32 network runs on at load to find each map's outlier channels."""

FAITHFUL = 0.999
"""Least cosine, on every CALIBRATION sentence, between the int8 and float32 vectors
for the int8 encoder to be used (measured here: 0.9997 typical)."""


class Int8Unfaithful(SemanticUnavailable):
    """The int8 encoder strays from the float32 model on this machine (see :data:`FAITHFUL`).

    Integer kernels differ by CPU: without VNNI (or ARM's dot product),
    onnxruntime's uint8 x int8 products can saturate. The float32 model is used then.
    """


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx  # type: ignore[import-not-found, unused-ignore]
        import onnxruntime  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise SemanticUnavailable(f"{missing} is not installed; {INSTALL_HINT}") from exc
    return onnx, onnxruntime


class Int8MiniLMEmbedder(MiniLMEmbedder):
    """all-MiniLM-L6-v2 with int8 linear maps on onnxruntime; the float32 model's API.

    Loaded as the float32 model is (``Int8MiniLMEmbedder.load(outliers=...,
    faithful=...)``), and also needs onnxruntime and onnx (the extra). Building
    it checks itself: the CALIBRATION sentences are embedded both ways, and
    :class:`Int8Unfaithful` is raised if any pair's cosine is below
    ``faithful`` (default :data:`FAITHFUL`); :func:`load_embedder` then falls
    back to the float32 model.
    """

    def __init__(
        self,
        tensors: dict[str, Array],
        tokenizer: Any,
        *,
        max_tokens: int = 256,
        batch_tokens: int = 256,
        outliers: int = OUTLIERS,
        faithful: float | None = None,
    ) -> None:
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        super().__init__(tensors, tokenizer, max_tokens=max_tokens, batch_tokens=batch_tokens)
        if not 0 <= outliers < DIM:
            raise ValueError(f"outliers must be in [0, {DIM})")
        onnx, ort = _require_onnx()
        # Until the session exists, _encode is the float32 network's: the
        # calibration and the self-check's reference vectors come from it.
        self._session: Any = None
        peaks, reference = self._calibrate()
        model = _build_graph(onnx, self, peaks, outliers)
        options = ort.SessionOptions()
        # One thread: the poller embeds in one worker thread, and the bot's event
        # loop, parsing and delivery need the machine's other core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            # Least cosine between the int8 and float32 vectors of the CALIBRATION sentences.
            self.fidelity = float(np.min(np.sum(self.embed(CALIBRATION) * reference, axis=1)))
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            # An older onnxruntime may lack an operator the graph uses (opset 20 Gelu,
            # MatMulIntegerToFloat): that is a reason to fall back, not to stop the bot.
            self._session = None
            raise SemanticUnavailable(
                f"onnxruntime {getattr(ort, '__version__', '?')} cannot run the int8 encoder: "
                f"{exc}"
            ) from exc
        bar = FAITHFUL if faithful is None else faithful
        if self.fidelity < bar:
            raise Int8Unfaithful(
                f"int8 encoder strays from float32 on this CPU: cosine {self.fidelity:.5f}"
                f" < {bar}"
            )

    def _calibrate(self) -> tuple[dict[tuple[int, str], Array], Array]:
        """One float32 pass over CALIBRATION: the largest absolute value of every input
        channel of every linear map, and the sentences' vectors (the self-check's reference)."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        peaks: dict[tuple[int, str], Array] = {}

        def observe(layer: int, name: str, a: Array) -> None:
            peak = np.abs(a).max(axis=0)
            key = (layer, name)
            peaks[key] = np.maximum(peaks[key], peak) if key in peaks else peak

        # One sentence at a time: no padding rows among the observed activations.
        vectors = []
        for text in CALIBRATION:
            ids = np.asarray([self._tok.encode(text).ids])
            vectors.append(self._forward(ids, np.ones(ids.shape, np.float32), observe)[0])
        return peaks, np.stack(vectors)

    def _encode(self, x: Array, bias: Array, observe: Observer | None = None) -> Array:
        """The encoder on onnxruntime (float32 until the session is built)."""
        import numpy as np  # type: ignore[import-not-found, unused-ignore]

        if self._session is None:
            return super()._encode(x, bias, observe)

        bsz, width, _ = x.shape
        feeds = {
            "x": np.ascontiguousarray(x.reshape(bsz * width, DIM), dtype=np.float32),
            "bias": np.ascontiguousarray(bias, dtype=np.float32),
            "qkv_shape": np.array([bsz, width, 3, _HEADS, DIM // _HEADS], dtype=np.int64),
            "ones": np.ones((bsz * width, 1), dtype=np.float32),
        }
        out: Array = self._session.run(None, feeds)[0].reshape(bsz, width, DIM)
        return out


def load_embedder(*, int8: bool = True) -> tuple[MiniLMEmbedder, str]:
    """The embedder the bot runs, and a line saying which one and why.

    The int8 encoder when onnxruntime and onnx are installed and it passes its
    self-check on this CPU; otherwise the float32 model (same vectors within
    cosine 0.999, ~2.7x slower). Raises :class:`SemanticUnavailable` only when
    the float32 model cannot load either (no extra, missing or altered weights).
    """
    if not int8:
        return MiniLMEmbedder.load(), "float32 encoder (numpy), as asked"
    try:
        fast = Int8MiniLMEmbedder.load()
    except SemanticUnavailable as exc:
        # Whatever stops the float32 model too (weights, checksums) is raised by it.
        return MiniLMEmbedder.load(), f"float32 encoder (numpy): int8 unavailable: {exc}"
    return fast, f"int8 encoder (onnxruntime), fidelity {fast.fidelity:.5f} on this CPU"


class _Graph:
    """Accumulates ONNX nodes and initialisers; each node is named after its output."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, value: Any) -> str:
        from onnx import numpy_helper  # type: ignore[import-not-found, unused-ignore]

        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> list[str]:
        """Add a node; its outputs are named after it."""
        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(
            self.onnx.helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs)
        )
        return outs

    def one(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Add a node with one output and return that output's name."""
        return self.op(op_type, inputs, **attrs)[0]


def _linear(g: _Graph, a: str, key: str, w: Array, b: Array, peak: Array, outliers: int) -> str:
    """``a @ w + b`` for ``a`` of shape (tokens, in): int8 product plus a float32 one.

    ``a``'s outlier channels (the ``outliers`` largest in ``peak``) go through
    float32; the rest are quantized per row, ``a ~= step * (q - zp)`` with ``q``
    uint8, and multiplied by ``w``'s int8 rows. The float32 product also
    carries the zero-point correction as one extra column: ``-step * zp`` times
    the column sums of the dequantized int8 weights.
    """
    import numpy as np  # type: ignore[import-not-found, unused-ignore]

    idx = np.sort(np.argsort(peak)[::-1][:outliers]).astype(np.int64)
    keep = np.ones(w.shape[0], dtype=np.float32)
    keep[idx] = 0.0
    wk = w * keep[:, None]
    col_scale = (np.abs(wk).max(axis=0) / 127.0).astype(np.float32)
    col_scale[col_scale == 0] = 1.0
    wq = np.clip(np.round(wk / col_scale), -127, 127).astype(np.int8)
    # The sums must be of the dequantized weights, not of w: with w's, each weight's
    # rounding error no longer cancels against the quantized activations
    # (measured: cosine to the float32 model 0.995 instead of 0.9997).
    colsum = (wq.astype(np.float32) * col_scale).sum(axis=0, keepdims=True)
    masked = g.one("Mul", a, g.const(f"{key}_keep", keep))
    # The range always holds 0, so that the zero point is a valid uint8.
    lo = g.one("Min", g.one("ReduceMin", masked, "axis_last", keepdims=1), "zero")
    hi = g.one("Max", g.one("ReduceMax", masked, "axis_last", keepdims=1), "zero")
    step = g.one("Mul", g.one("Max", g.one("Sub", hi, lo), "tiny"), "inv255")
    zp = g.one("Clip", g.one("Round", g.one("Div", g.one("Neg", lo), step)), "zero", "u8max")
    step_rows = g.one("Reshape", step, "flat")
    zp_rows = g.one("Cast", g.one("Reshape", zp, "flat"), to=int(g.onnx.TensorProto.UINT8))
    q = g.one("QuantizeLinear", masked, step_rows, zp_rows, axis=0)
    # No bias input here: with a per-row a_scale, onnxruntime 1.32 scales the bias
    # by it too (measured). The bias rides in the float32 product instead.
    y = g.op(
        "MatMulIntegerToFloat",
        [q, g.const(f"{key}_wq", wq), step, g.const(f"{key}_col_scale", col_scale)],
        domain="com.microsoft",
    )[0]
    # The float32 side: [outlier channels | -step * zp | 1] @ [w[idx]; colsum; b].
    columns = [g.one("Mul", g.one("Neg", step), zp), "ones"]
    if outliers:
        columns.insert(0, g.one("Gather", a, g.const(f"{key}_idx", idx), axis=1))
    side = g.one("Concat", *columns, axis=1)
    w_side = np.concatenate([w[idx], colsum, b[None, :]], axis=0).astype(np.float32)
    return g.one("Gemm", side, g.const(f"{key}_w_side", np.ascontiguousarray(w_side)), y)


def _build_graph(
    onnx: Any, net: MiniLMEmbedder, peaks: dict[tuple[int, str], Array], outliers: int
) -> Any:
    """The encoder as an ONNX model on (tokens, 384) rows: ``x``, ``bias``,
    ``qkv_shape``, ``ones`` -> ``out``.

    ``x`` is the embedded batch flattened to rows, ``bias`` the (batch, 1, 1,
    width) attention mask bias, ``qkv_shape`` ``[batch, width, 3, heads, 32]``.
    """
    import numpy as np  # type: ignore[import-not-found, unused-ignore]

    g = _Graph(onnx)
    hd = DIM // _HEADS
    for name, value in {
        "axis_last": np.array([-1], dtype=np.int64),
        "axis0": np.array([0], dtype=np.int64),
        "flat": np.array([-1], dtype=np.int64),
        "rows": np.array([-1, DIM], dtype=np.int64),
        "tiny": np.array(1e-8, dtype=np.float32),
        "inv255": np.array(1 / 255, dtype=np.float32),
        "zero": np.array(0.0, dtype=np.float32),
        "u8max": np.array(255.0, dtype=np.float32),
        "scale": np.array(1 / math.sqrt(hd), dtype=np.float32),
    }.items():
        g.const(name, value)
    x = "x"
    for i, layer in enumerate(net._layers[:_LAYERS]):
        def lin(a: str, name: str, w: Array, b: Array, i: int = i) -> str:
            return _linear(g, a, f"l{i}_{name}", w, b, peaks[(i, name)], outliers)

        qkv = g.one("Reshape", lin(x, "qkv", layer.qkv_w, layer.qkv_b), "qkv_shape")
        qkv = g.one("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # (3, batch, heads, width, 32)
        q, k, v = (g.one("Squeeze", t, "axis0")
                   for t in g.op("Split", [qkv], 3, axis=0, num_outputs=3))
        scores = g.one("MatMul", g.one("Mul", q, "scale"), g.one("Transpose", k, perm=[0, 1, 3, 2]))
        probs = g.one("Softmax", g.one("Add", scores, "bias"), axis=-1)
        ctx = g.one("Transpose", g.one("MatMul", probs, v), perm=[0, 2, 1, 3])
        ctx = g.one("Reshape", ctx, "rows")
        attn = g.one("Add", lin(ctx, "out", layer.out_w, layer.out_b), x)
        x = g.one("LayerNormalization", attn, g.const(f"l{i}_ln1_g", layer.ln1_g),
                  g.const(f"l{i}_ln1_b", layer.ln1_b), axis=-1, epsilon=_LN_EPS)
        h = g.one("Gelu", lin(x, "up", layer.up_w, layer.up_b))
        ffn = g.one("Add", lin(h, "down", layer.down_w, layer.down_b), x)
        x = g.one("LayerNormalization", ffn, g.const(f"l{i}_ln2_g", layer.ln2_g),
                  g.const(f"l{i}_ln2_b", layer.ln2_b), axis=-1, epsilon=_LN_EPS)
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["out"], name="out"))
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        "minilm_int8",
        [onnx.helper.make_tensor_value_info("x", f32, ["tokens", DIM]),
         onnx.helper.make_tensor_value_info("bias", f32, ["batch", 1, 1, "width"]),
         onnx.helper.make_tensor_value_info("qkv_shape", onnx.TensorProto.INT64, [5]),
         onnx.helper.make_tensor_value_info("ones", f32, ["tokens", 1])],
        [onnx.helper.make_tensor_value_info("out", f32, ["tokens", DIM])],
        g.inits,
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[
            onnx.helper.make_opsetid("", 20),
            onnx.helper.make_opsetid("com.microsoft", 1),  # MatMulIntegerToFloat
        ],
    )
    model.ir_version = 9
    return model
