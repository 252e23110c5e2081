"""ai.local.embeddings: all-MiniLM-L6-v2 offline, without torch.

The reference vectors in fixtures/minilm_reference.json were made once by
sentence-transformers 6.2.0 + torch 2.13.0 (CPU) from the same wheel's model files
(fixtures/make_minilm_reference.py); torch is not needed to run these tests.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ai.local import embeddings as E

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None

BACKEND_PARAMS = [
    "numpy",
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed")),
]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def embedder(request: pytest.FixtureRequest) -> E.LocalEmbedder:
    # batch_size=4 so that the 10 reference texts span several padded chunks.
    return E.LocalEmbedder(backend=request.param, batch_size=4)


def test_identity(embedder: E.LocalEmbedder) -> None:
    assert embedder.model == "all-minilm-l6-v2"
    assert embedder.dimensions == 384
    assert embedder.max_seq_length == 256
    assert embedder.backend in ("numpy", "onnxruntime")


def test_matches_sentence_transformers_reference(embedder: E.LocalEmbedder, reference: dict) -> None:
    ref = np.asarray(reference["vectors"], dtype=np.float32)
    got = embedder.embed(reference["texts"])
    assert got.shape == ref.shape == (len(reference["texts"]), 384)
    assert got.dtype == np.float32
    cos = (got * ref).sum(axis=1)
    assert cos.min() > 0.999
    # In practice far tighter than the cosine bound: float32 rounding only.
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_rows_are_unit_norm(embedder: E.LocalEmbedder, reference: dict) -> None:
    got = embedder.embed(reference["texts"])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_paraphrase_closer_than_unrelated(embedder: E.LocalEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "The meeting has been moved to Thursday afternoon.",
            "We rescheduled the meeting for Thursday after lunch.",
            "The invoice total includes a 20% VAT surcharge.",
        ]
    )
    para, unrelated = float(a @ b), float(a @ c)
    assert para > 0.5  # 0.70 with this model
    assert para > unrelated + 0.4  # unrelated: -0.02


def test_batch_equals_single(embedder: E.LocalEmbedder, reference: dict) -> None:
    texts = reference["texts"]
    batched = embedder.embed(texts)
    single = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_one(texts[0]), single[0], atol=1e-6)


def test_order_does_not_matter(embedder: E.LocalEmbedder, reference: dict) -> None:
    texts = reference["texts"]
    fwd = embedder.embed(texts)
    rev = embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(fwd, rev, atol=1e-5)


def test_empty_list(embedder: E.LocalEmbedder) -> None:
    out = embedder.embed([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32


def test_rejects_bare_string(embedder: E.LocalEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_truncates_at_256_tokens(embedder: E.LocalEmbedder) -> None:
    base = "alpha beta gamma delta " * 80  # > 256 word pieces
    assert len(embedder.tokenizer.encode(base).ids) == 256
    a, b = embedder.embed([base, base + " and a tail that falls past the limit"])
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed")
def test_backends_agree(reference: dict) -> None:
    texts = reference["texts"] + ["a second batch", "of different lengths, to pad differently"]
    np_vecs = E.LocalEmbedder(backend="numpy").embed(texts)
    ort_vecs = E.LocalEmbedder(backend="onnxruntime").embed(texts)
    np.testing.assert_allclose(np_vecs, ort_vecs, atol=1e-5)


def _softmax_attention_reference(q, k, v, bias):  # noqa: ANN001, ANN202
    scores = (q.astype(np.float64) @ k.astype(np.float64).transpose(0, 1, 3, 2)) + (0 if bias is None else bias)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v.astype(np.float64)


@pytest.mark.parametrize("spread", [1.0, 40.0])  # 40: rows far below the matrix max underflow
def test_numpy_attention_kernel(spread: float) -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 7, 4)).astype(np.float32) for _ in range(3))
    q[:, :, 0] *= spread  # one query row with huge scores
    k *= np.float32(spread)
    mask = np.ones((2, 7), dtype=np.float32)
    mask[1, 5:] = 0
    bias = ((mask - 1) * np.float32(1e9)).reshape(2, 1, 1, 7)
    got = E._attention(q, k, v, bias)
    np.testing.assert_allclose(got, _softmax_attention_reference(q, k, v, bias), atol=1e-5)
    assert np.isfinite(got).all()


def test_numpy_gelu_is_exact_erf_gelu() -> None:
    import math

    x = np.linspace(-12, 12, 20001, dtype=np.float32).reshape(-1, 3)
    ref = np.vectorize(lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))))(x.astype(np.float64))
    got = E._gelu_(x.copy())
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_auto_falls_back_to_numpy_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert E.LocalEmbedder().backend == "numpy"
    with pytest.raises(ImportError):
        E.LocalEmbedder(backend="onnxruntime")


def test_unknown_backend_rejected() -> None:
    with pytest.raises(ValueError):
        E.LocalEmbedder(backend="torch")


def test_model_dir_found_through_package_metadata() -> None:
    d = E.find_model_dir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (d / name).is_file()
    dist = importlib.metadata.distribution(E.MODEL_DISTRIBUTION)
    files = {str(dist.locate_file(f)) for f in dist.files or ()}
    assert str(d / "model.safetensors") in files


def test_get_embedder_is_cached() -> None:
    first = E.get_embedder()
    assert E.get_embedder() is first
    assert isinstance(first, E.LocalEmbedder)


def test_loads_and_embeds_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load the model from scratch and embed with the network made unusable.

    Only networking is mocked: socket creation and name resolution raise, so any hub
    download attempt would fail the test.
    """

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for backend in ["numpy"] + (["onnxruntime"] if HAVE_ORT else []):
        vecs = E.LocalEmbedder(backend=backend).embed(["offline is fine", "no network needed"])
        assert vecs.shape == (2, 384)


def test_no_torch_at_run_time() -> None:
    """A fresh interpreter embeds without importing torch or sentence-transformers."""
    code = (
        "import sys\n"
        "from ai.local.embeddings import get_embedder\n"
        "v = get_embedder().embed(['hello'])\n"
        "assert v.shape == (1, 384)\n"
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
