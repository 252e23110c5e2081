"""Throughput of ai.local.embeddings.LocalEmbedder (sentences/s), with baselines.

Usage::

    .venv/bin/python -m bench.ai_embeddings [--quick] [--n 256] [--tokens 64] [--batch-size 32]

Prints sentences/s for LocalEmbedder as get_embedder() builds it (onnxruntime backend when
installed), batched and one sentence at a time, the same for the pure-numpy backend as the
baseline measured in the same run, and ratio lines. If sentence-transformers and torch
happen to be importable (they are not project dependencies) it also measures them on the
same sentences and prints the max cosine distance to them.
Each figure is the best of --repeat runs (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ai.local.embeddings import LocalEmbedder  # noqa: E402
from bench.common import emit  # noqa: E402

WORDS = (
    "meeting project deadline review customer invoice server deploy release budget team "
    "schedule update report issue ticket sprint design feedback message channel thread "
    "please tomorrow today morning afternoon because after before during while the a an "
    "we you they our their new old quick important urgent small large final draft version "
    "database cache queue worker latency error retry timeout login account password email "
    "call notes agenda slides demo launch plan goal metric growth revenue quarter week"
).split()


def make_sentences(tok, n: int, tokens: int, seed: int = 0) -> list[str]:
    """n distinct sentences of exactly `tokens` word pieces each ([CLS]/[SEP] included)."""
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        words: list[str] = []
        while len(tok.encode(" ".join(words)).ids) < tokens:
            words.append(rnd.choice(WORDS))
        while len(tok.encode(" ".join(words)).ids) > tokens:
            words.pop()
        text = " ".join(words)
        if len(tok.encode(text).ids) == tokens:
            out.append(text)
    return out


def best_rate(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="sentences per batched run")
    ap.add_argument("--n-single", type=int, default=64, help="sentences for the one-at-a-time runs")
    ap.add_argument("--tokens", type=int, default=64, help="word pieces per sentence")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true", help="skip the sentence-transformers baseline")
    ap.add_argument("--quick", action="store_true", help="64 sentences, 16 one at a time, best of 1")
    args = ap.parse_args()
    if args.quick:
        args.n, args.n_single, args.repeat = min(args.n, 64), min(args.n_single, 16), 1

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cores {os.cpu_count()}")
    print(f"BLAS: {blas_info()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}")

    t0 = time.perf_counter()
    emb = LocalEmbedder(batch_size=args.batch_size)  # what get_embedder() builds
    load_s = time.perf_counter() - t0
    texts = make_sentences(emb.tokenizer, args.n, args.tokens)
    single_texts = texts[: args.n_single]
    print(f"model {emb.model} dim {emb.dimensions}; {args.n} sentences x {args.tokens} tokens; best of {args.repeat}")

    def measure(e: LocalEmbedder) -> tuple[float, float]:
        e.embed(texts[: args.batch_size])  # warm-up
        batched = best_rate(lambda: e.embed(texts), len(texts), args.repeat)
        single = best_rate(lambda: [e.embed([t]) for t in single_texts], len(single_texts), args.repeat)
        return batched, single

    rates: dict[str, float] = {}
    singles: dict[str, float] = {}
    embedders = {emb.backend: (emb, load_s)}
    if emb.backend != "numpy":
        t0 = time.perf_counter()
        embedders["numpy"] = (LocalEmbedder(backend="numpy", batch_size=args.batch_size), time.perf_counter() - t0)
    for name, (e, load) in embedders.items():
        batched, single = measure(e)
        rates[name], singles[name] = batched, single
        tag = " (default)" if e is emb else ""
        print(f"LocalEmbedder[{name}]{tag}: load {load:.2f}s, batched (batch {args.batch_size}) "
              f"{batched:7.1f} sentences/s, one at a time {single:7.1f} sentences/s, ratio {batched / single:.2f}x")
    if "numpy" in rates and emb.backend != "numpy":
        print(f"ratio LocalEmbedder[{emb.backend}] / LocalEmbedder[numpy] batched: {rates[emb.backend] / rates['numpy']:.2f}x")
    default = emb.backend
    emit("ai_embeddings", f"{default} batched (batch {args.batch_size}), {args.tokens} tokens", rates[default], "sentences/s",
         baseline=singles[default], baseline_label=f"{default} one sentence at a time")
    if "numpy" in rates and default != "numpy":
        emit("ai_embeddings", f"{default} batched vs the numpy backend", rates[default], "sentences/s",
             baseline=rates["numpy"], baseline_label="numpy backend, batched", aim="ratio > 1", ok=rates[default] > rates["numpy"])

    if args.no_torch:
        return
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers/torch not importable (not a project dependency): torch baseline skipped")
        return
    st = SentenceTransformer(str(emb.model_dir), device="cpu")
    st.encode(texts[: args.batch_size], batch_size=args.batch_size)
    with torch.inference_mode():
        tr = best_rate(
            lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True),
            len(texts),
            args.repeat,
        )
    ref = st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    print(f"torch {torch.__version__} sentence-transformers (batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads): {tr:7.1f} sentences/s")
    for name, (e, _) in embedders.items():
        worst = float(1.0 - (ref * e.embed(texts)).sum(axis=1).min())
        print(f"ratio LocalEmbedder[{name}] / torch: {rates[name] / tr:.2f}x; max cosine distance vs torch {worst:.1e}")


if __name__ == "__main__":
    main()
