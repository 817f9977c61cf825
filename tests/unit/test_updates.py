"""The round's update store: spilled updates kept as float16 steps from the global model are half the bytes, and
their mean is within the stated bound of the exact mean; a step float32 cannot hold falls back to the update
itself; float32 spills and memory keep today's bits."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import aggregator.protocol.updates
from aggregator.protocol.selection import gram as exact_gram
from aggregator.protocol.updates import HALF_ERROR, UpdateStore, half_error_bound


def round_of(rng, n: int = 5):
    """A global model and n updates: small steps of different sizes per array (one array moves 1e-6, one not at
    all), as training leaves them, and one node's step 100× the others'."""
    template = OrderedDict(w=rng.normal(0, 0.05, (64, 37)).astype(np.float32),
                           b=rng.normal(0, 1, 37).astype(np.float32),
                           tiny=rng.normal(0, 1, 500).astype(np.float32),
                           frozen=np.ones(7, np.float32))
    size = {"w": 1e-3, "b": 1e-2, "tiny": 1e-6, "frozen": 0.0}
    updates = {k: OrderedDict((name, (a + (100 if k == n - 1 else 1) * size[name]
                                      * rng.standard_normal(a.shape)).astype(np.float32))
                              for name, a in template.items()) for k in range(n)}
    return template, updates


def exact_mean(updates, keys, weights):
    return {name: sum(w * updates[k][name].astype(np.float64) for k, w in zip(keys, weights, strict=True))
            for name in updates[keys[0]]}


def within_bound(mean, template, updates, keys, weights) -> float:
    """The largest error of ``mean`` as a share of its bound (≤ 1: within it)."""
    exact = exact_mean(updates, keys, weights)
    worst = 0.0
    for name, expected in exact.items():
        steps = [updates[k][name].astype(np.float64) - template[name] for k in keys]
        bound = half_error_bound(steps, weights) + np.spacing(np.abs(expected).astype(np.float32))  # + float32 ulp
        worst = max(worst, float(np.max(np.abs(mean[name] - expected) / bound)))
    return worst


@pytest.mark.parametrize("weights", [None, [0.5, 0.3, 0.2]])
def test_float16_steps_average_within_the_stated_bound(tmp_path, monkeypatch, weights):
    monkeypatch.setattr(aggregator.protocol.updates, "BLOCK", 1000)  # w is cut mid-block
    template, updates = round_of(np.random.default_rng(0))
    store = UpdateStore(template, tmp_path)
    for k, u in updates.items():
        store.put(k, u)
    keys = [0, 2, 4]
    mean = store.mean(keys, weights)
    shares = weights or [1 / 3] * 3
    assert all(mean[n].dtype == np.float32 and mean[n].shape == a.shape for n, a in template.items())
    assert within_bound(mean, template, updates, keys, shares) <= 1.0
    exact = exact_mean(updates, keys, shares)
    assert not np.array_equal(mean["w"], exact["w"].astype(np.float32))  # not the same bits: a tolerance
    assert np.array_equal(mean["frozen"], template["frozen"])  # no step: the global values exactly
    store.close()


def test_a_float16_step_file_is_half_the_update(tmp_path):
    template, updates = round_of(np.random.default_rng(1))
    half, full = UpdateStore(template, tmp_path), UpdateStore(template, tmp_path, "float32")
    for store in (half, full):
        store.put(0, updates[0])
    (h,), (f,) = half.dir.iterdir(), full.dir.iterdir()
    assert h.stat().st_size == 2 * half.size and f.stat().st_size == 4 * full.size


def test_a_step_float32_cannot_hold_is_kept_as_the_update(tmp_path):
    """θ = 3e38 where θ_g = −3e38: the step overflows float32, so this update is spilled as it came (float32) and
    read back exactly; averaged with float16 steps, the mean is still within their bound."""
    template, updates = round_of(np.random.default_rng(2))
    template["b"][0], updates[1]["b"][0] = -3e38, 3e38
    for k in (0, 2):
        updates[k]["b"][0] = -3e38
    store = UpdateStore(template, tmp_path)
    for k in (0, 1, 2):
        store.put(k, updates[k])
    assert store._shifts[1] is None and store._shifts[0] is not None
    assert (store.dir / "1.bin").stat().st_size == 4 * store.size
    assert all(np.array_equal(a, updates[1][n]) for n, a in store.get(1).items())
    mean = store.mean([0, 1, 2])
    exact = exact_mean(updates, [0, 1, 2], [1 / 3] * 3)
    assert mean["b"][0] == np.float32(exact["b"][0])  # −1e38
    for name in template:  # the float32 update is added exactly: only the two float16 steps have an error
        steps = [updates[k][name].astype(np.float64) - template[name] for k in (0, 2)]
        bound = half_error_bound(steps, [1 / 3] * 2) + np.spacing(np.abs(exact[name]).astype(np.float32))
        assert np.all(np.abs(mean[name] - exact[name]) <= bound)
    store.close()


@pytest.mark.parametrize("spill", [False, True])
def test_float32_keeps_the_bits_of_the_whole_array_mean(tmp_path, spill):
    template, updates = round_of(np.random.default_rng(3))
    store = UpdateStore(template, tmp_path if spill else None, "float32")
    for k, u in updates.items():
        store.put(k, u)
    for weights in (None, [0.25, 0.75]):
        mean = store.mean([1, 3], weights)
        for name in template:
            if weights is None:
                expected = np.mean([updates[1][name], updates[3][name]], axis=0, dtype=np.float64)
            else:  # each weighted update in float32, summed in float64: as the mean always did
                expected = (0.25 * updates[1][name]).astype(np.float64) + 0.75 * updates[3][name]
            assert np.array_equal(mean[name], expected.astype(np.float32))


def test_gram_of_float16_steps_is_the_exact_gram_within_the_bound(tmp_path):
    template, updates = round_of(np.random.default_rng(4))
    store = UpdateStore(template, tmp_path)
    for k, u in updates.items():
        store.put(k, u)
    keys = list(updates)
    steps = np.stack([np.concatenate([(updates[k][n].astype(np.float64) - template[n]).ravel() for n in template])
                      for k in keys])
    norms = np.sqrt(np.diag(exact_gram(steps)))
    assert np.all(np.abs(store.gram(keys, template) - exact_gram(steps))
                  <= 3 * HALF_ERROR * np.outer(norms, norms) + 1e-12)


def test_a_store_refuses_an_unknown_precision(tmp_path):
    with pytest.raises(ValueError, match="float16 or float32"):
        UpdateStore({"w": np.zeros(3, np.float32)}, tmp_path, "bfloat16")
