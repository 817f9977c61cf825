"""Krum on sketches: pairwise distances of 99.9 M-parameter updates in a few thousand dimensions.

Flower's Multi-Krum stacks every reply's full vector and computes all pairwise distances: O(n·d) memory and
O(n²·d) time, 40 GB for 100 real-size updates. Here each update is reduced, as it arrives, to a count sketch
(a sparse Johnson–Lindenstrauss projection): coordinate j of the update adds ``sign(j)·x_j`` to bucket
``bucket(j)`` of a ``dim``-long vector, where bucket and sign are hashed from (round seed, j). So

- it is linear: sketch(a − b) = sketch(a) − sketch(b), and E‖sketch(x)‖² = ‖x‖² (random signs: unbiased);
- the relative error of a squared distance has standard deviation ≤ √(2/dim) (1.1 % at dim 16384);
- it costs O(d) per update, streamed over the update's arrays in chunks (one pass, no dense matrix);
- anyone with the seed recomputes it: the seed of each round is published with the round's outcomes.

Why the seed is kept from the nodes until the round is over: whoever knows the buckets and signs can add to an
update a large vector the sketch does not see (two coordinates of one bucket, opposite signed), so Krum on
sketches would be blind to it. The seed is sha256(salt ‖ round ‖ global hash) with a salt the aggregator draws at
start and keeps to itself while replies come in; the round's seed is written into its records afterwards.

Krum itself (``krum_order``) is Flower's rule on the sketched distances: each reply's score is the sum of its
n − f − 2 smallest squared distances to the others, best (lowest) first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

SKETCH_DIM = 16384  # buckets: the smallest measured at which sketched Krum let in no attacker exact Krum kept out
EXACT_MAX_VALUES = 1 << 28  # n·d up to this (268 M floats, 1 GiB in float32): exact Multi-Krum, replies in memory
CHUNK = 1 << 22  # coordinates hashed or sketched at once (bounds the temporary arrays to a few tens of MB)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def round_seed(salt: bytes, round_: int, global_hash: str) -> int:
    """The sketch seed of a round: 63 bits of sha256(salt ‖ round ‖ global hash)."""
    digest = hashlib.sha256(salt + round_.to_bytes(8, "big") + global_hash.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-mixed 64-bit hash, vectorised (uint64 wraps on overflow)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_codes(seed: int, start: int, stop: int, dim: int) -> np.ndarray:
    """Codes of coordinates ``start..stop``: ``2·bucket + (sign < 0)``, a function of (seed, index) only."""
    idx = np.arange(start, stop, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(idx * _GOLDEN + np.uint64(seed))
    return (h % np.uint64(2 * dim)).astype(np.uint16 if dim <= 1 << 15 else np.uint32)


class CountSketch:
    """The count sketch of one round: ``dim`` buckets, buckets and signs hashed from ``seed``.

    The codes of all ``size`` coordinates are hashed once (2 bytes each: 200 MB at 99.9 M) and reused for every
    update of the round; ``__call__`` streams an update's arrays through them.
    """

    def __init__(self, dim: int, seed: int, size: int) -> None:
        if dim < 1:
            raise ValueError(f"sketch dimension must be at least 1, got {dim}")
        self.dim, self.seed, self.size = dim, seed, size
        self._codes: np.ndarray | None = None

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            codes = np.empty(self.size, np.uint16 if self.dim <= 1 << 15 else np.uint32)
            for start in range(0, self.size, CHUNK):
                stop = min(self.size, start + CHUNK)
                codes[start:stop] = hash_codes(self.seed, start, stop, self.dim)
            self._codes = codes
        return self._codes

    def release(self) -> None:
        """Let the codes go (200 MB at real size) once the round's updates are sketched; hashed again if needed."""
        self._codes = None

    def __call__(self, arrays: Iterable[np.ndarray]) -> np.ndarray:
        """The sketch (float64, ``dim``) of the concatenation of ``arrays``, in their order."""
        codes, acc, offset = self.codes, np.zeros(2 * self.dim), 0
        for array in arrays:
            flat = np.ravel(array)
            for start in range(0, flat.size, CHUNK):
                part = flat[start:start + CHUNK]
                acc += np.bincount(codes[offset + start:offset + start + part.size], weights=part,
                                   minlength=2 * self.dim)
            offset += flat.size
        if offset != self.size:
            raise ValueError(f"the update has {offset} values, this round's sketch is for {self.size}")
        return acc[0::2] - acc[1::2]


def squared_distances(points: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances of the rows of ``points`` (n × k), in float64."""
    points = np.asarray(points, np.float64)
    norms = np.einsum("ij,ij->i", points, points)
    dist = norms[:, None] + norms[None, :] - 2 * points @ points.T
    np.fill_diagonal(dist, 0.0)
    return np.maximum(dist, 0.0)


def krum_order(points: np.ndarray, num_malicious: int) -> list[int]:
    """Rows of ``points`` ranked by Krum score, best first (Flower's ``select_multikrum`` rule: the score is the
    sum of the squared distances to the max(1, n − f − 2) closest others; ties keep the input order)."""
    dist = squared_distances(points)
    n = len(dist)
    closest = max(1, n - num_malicious - 2)
    scores = [np.sort(np.delete(dist[i], i))[:closest].sum() for i in range(n)]
    return [int(i) for i in np.argsort(scores, kind="stable")]


def use_sketch(n: int, d: int, max_values: int = EXACT_MAX_VALUES) -> bool:
    """Exact Multi-Krum while n·d ≤ ``max_values`` (all replies fit in memory at once), sketches above."""
    return n * d > max_values
