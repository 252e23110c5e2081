"""Vectors as bytes in the store, and brute-force cosine top-k over them.

Stored little-endian float32 and L2-normalized, so cosine is a dot product. Brute force is
the right tool at a person's scale: 10k x 384 is one matmul well under a millisecond
(notes: ai-offline), and it needs no extension that SQLite or PostgreSQL here cannot load.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DTYPE = np.dtype("<f4")


def pack(vector: np.ndarray | Sequence[float]) -> bytes:
    return np.asarray(vector, dtype=DTYPE).tobytes()


def unpack(blob: bytes, dims: int | None = None) -> np.ndarray:
    vector = np.frombuffer(blob, dtype=DTYPE)
    if dims is not None and vector.shape[0] != dims:
        raise ValueError(f"vector has {vector.shape[0]} values, expected {dims}")
    return vector


def matrix(blobs: Sequence[bytes], dims: int) -> np.ndarray:
    """Rows of equal length; a malformed blob would shift every row after it, so check."""
    if any(len(b) != dims * DTYPE.itemsize for b in blobs):
        raise ValueError("stored vectors of different sizes")
    return np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(blobs), dims)


def top_k(query: np.ndarray, rows: np.ndarray, k: int, min_score: float = -1.0) -> list[tuple[int, float]]:
    """Indexes of the k rows most similar to `query` (both normalized), best first."""
    if rows.shape[0] == 0 or k <= 0:
        return []
    scores = rows @ np.asarray(query, dtype=np.float32)
    k = min(k, scores.shape[0])
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best if scores[i] >= min_score]
