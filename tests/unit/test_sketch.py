"""Krum on sketches: the count sketch keeps distances, anyone with the seed recomputes it, Krum on it agrees with
Flower's Krum, and the streamed mean of spilled updates is the in-memory mean."""

from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import RecordDict
from flwr.serverapp.strategy.multikrum import select_multikrum

from aggregator.protocol.sketch import (
    SKETCH_DIM,
    CountSketch,
    hash_codes,
    krum_order,
    round_seed,
    squared_distances,
    use_sketch,
)
from aggregator.protocol.updates import UpdateStore
from attacks.library import synthetic_updates
from node.params import pack

DIM = 4096


def test_sketch_keeps_pairwise_distances_within_the_stated_error():
    """The relative error of a squared distance has standard deviation √(2/dim) (2.2 % at 4096): over 190 pairs of
    dense and of heavy-tailed vectors, its spread is about that and no pair is off by more than 5 of it."""
    rng = np.random.default_rng(0)
    d = 300_000
    dense = rng.normal(0, 1, (20, d))
    heavy = rng.standard_t(2, (20, d))  # a few large coordinates dominate: the hard case for a sparse projection
    sk = CountSketch(DIM, seed=7, size=d)
    bound = np.sqrt(2 / DIM)
    for points in (dense, heavy):
        exact = squared_distances(points)
        sketched = squared_distances(np.stack([sk([p]) for p in points]))
        iu = np.triu_indices(len(points), 1)
        rel = sketched[iu] / exact[iu] - 1
        assert abs(rel.mean()) < 0.5 * bound  # unbiased
        assert rel.std() < 1.5 * bound
        assert np.abs(rel).max() < 5 * bound


def test_sketch_is_recomputable_from_the_seed_and_index_alone():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(30, 70)).astype(np.float32), rng.normal(size=500).astype(np.float32)]
    size = sum(a.size for a in arrays)
    a, b = CountSketch(256, 42, size), CountSketch(256, 42, size)
    assert np.array_equal(a(arrays), b(arrays))  # same seed: the same sketch on any machine
    assert not np.allclose(a(arrays), CountSketch(256, 43, size)(arrays))  # another round: another projection
    # Each coordinate's bucket and sign depend on (seed, index) only: any range can be hashed on its own.
    assert np.array_equal(a.codes[1000:1700], hash_codes(42, 1000, 1700, 256))
    # Streamed over the update's arrays: how the vector is cut into arrays does not matter.
    flat = np.concatenate([x.ravel() for x in arrays])
    assert np.allclose(a(arrays), a([flat[:17], flat[17:]]))
    # Linear: the sketch of a difference is the difference of the sketches.
    other = [x[::-1].copy() for x in arrays]
    assert np.allclose(a([x - y for x, y in zip(arrays, other, strict=True)]), a(arrays) - a(other))
    with pytest.raises(ValueError, match="values"):
        a([flat[:-1]])


def test_round_seed_depends_on_salt_round_and_global_model():
    seeds = {round_seed(s, r, g) for s in (b"a", b"b") for r in (1, 2) for g in ("0x01", "0x02")}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert round_seed(b"a", 1, "0x01") == round_seed(b"a", 1, "0x01")


def test_krum_order_is_flowers_rule():
    """On the full vectors, krum_order ranks exactly as Flower's select_multikrum."""
    rng = np.random.default_rng(2)
    points = [rng.normal(0, 1, 50) + (5 if i in (3, 7) else 0) for i in range(10)]
    contents = [RecordDict(pack({"w": p.astype(np.float32)})) for p in points]
    for f in (0, 1, 2):
        flower = select_multikrum(contents, num_malicious_nodes=f, num_nodes_to_select=10)
        ours = krum_order(np.stack([p.astype(np.float32) for p in points]), f)
        assert [contents.index(c) for c in flower] == ours


@pytest.mark.parametrize("kind", ["sign-flip", "collude", "ipm", "free-rider-noise", "poison-shuffle"])
def test_sketched_krum_lets_in_other_attackers_only_where_exact_krum_is_a_near_tie(kind):
    """docs/security.md's update patterns, within Krum's bound (1 of 7, f = 1) and beyond it (2 and 3 of 7):
    Multi-Krum (m = 3) on sketches of the default size selects the attackers exact Multi-Krum selects, except where
    exact Krum's 3rd and 4th best scores are within the sketch's error of each other (a near tie: measured rates in
    docs/benchmarks.md, "Scale"). Honest replies with near-equal scores may swap places."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    d = 200_000
    for attackers in (1, 2, 3) if kind != "collude" else (2, 3):
        for _ in range(3):
            points = synthetic_updates(rng, d, 7 - attackers, kind, attackers)
            sk = CountSketch(SKETCH_DIM, seed=int(rng.integers(2**62)), size=d)
            exact = krum_order(points, 1)
            sketched = krum_order(np.stack([sk([p]) for p in points]), 1)[:3]
            bad = set(range(7 - attackers, 7))
            if bad & set(sketched) != bad & set(exact[:3]):
                dist = squared_distances(points)
                scores = sorted(np.sort(np.delete(dist[i], i))[:4].sum() for i in range(7))
                assert scores[3] / scores[2] - 1 < 3 * np.sqrt(2 / SKETCH_DIM), (kind, attackers, exact, sketched)


def test_exact_below_the_bound_sketch_above():
    assert not use_sketch(100, 194_976) and use_sketch(100, 99_880_992)
    assert use_sketch(3, 99_880_992)  # three real-size updates are already 1.2 GB


@pytest.mark.parametrize("spill", [False, True])
def test_streamed_mean_is_the_in_memory_mean(tmp_path, spill):
    """In memory, or spilled in float32, the same bits (float16 steps: ``tests/unit/test_updates.py``)."""
    rng = np.random.default_rng(3)
    template = OrderedDict(w=np.zeros((40, 30), np.float32), b=np.zeros(30, np.float32))
    updates = {k: OrderedDict((n, rng.normal(0, 1, a.shape).astype(np.float32)) for n, a in template.items())
               for k in range(6)}
    store = UpdateStore(template, tmp_path if spill else None, precision="float32")
    for k, u in updates.items():
        store.put(k, u)
    assert store.spills == spill
    for n in template:
        assert np.array_equal(store.get(4)[n], updates[4][n])  # read back exactly what was kept
    chosen = [0, 2, 5]
    mean = store.mean(chosen)
    for n in template:
        expected = np.mean([updates[k][n] for k in chosen], axis=0, dtype=np.float64).astype(np.float32)
        assert mean[n].dtype == np.float32 and mean[n].shape == template[n].shape
        assert np.array_equal(mean[n], expected)
    store.close()
    assert not any(tmp_path.iterdir())  # the spilled files are gone with the round


def test_a_change_hidden_from_a_known_sketch_shows_in_a_secret_one():
    """Why the seed stays the aggregator's until the round is over: knowing the buckets and signs, an attacker adds
    a large change the sketch cannot see (two coordinates of one bucket, opposite in the sketch), so Krum on that
    sketch would take its update for the honest one. Under a seed it does not know, the change shows in full."""
    rng = np.random.default_rng(4)
    d = 100_000
    honest = rng.normal(0, 1e-3, d)
    known = CountSketch(DIM, seed=99, size=d)
    codes = known.codes.astype(np.int64)
    buckets, negative = codes >> 1, codes & 1
    first = {}
    pair = None
    for j, b in enumerate(buckets):  # two coordinates that fall into one bucket
        if b in first:
            pair = first[b], j
            break
        first[b] = j
    i, j = pair
    hidden = np.zeros(d)
    hidden[i] = 10.0 * (-1) ** negative[i]
    hidden[j] = -10.0 * (-1) ** negative[j]
    attack = honest + hidden
    assert np.sum((attack - honest) ** 2) == pytest.approx(200.0)  # a change 10⁸ times an honest coordinate's size
    assert np.sum((known([attack]) - known([honest])) ** 2) < 1e-12  # invisible to the sketch its maker knew
    secret = CountSketch(DIM, seed=round_seed(b"the aggregator's salt", 1, "0x01"), size=d)
    assert np.sum((secret([attack]) - secret([honest])) ** 2) > 100.0  # in full view of the one it did not
