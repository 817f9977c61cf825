"""The attack library on hand-made parameter sets: what each attack sends, proves and trains on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks import (
    ALIE_Z,
    ATTACKS,
    CRASH_ROUND,
    FREE_RIDER_SIGMA,
    IPM_EPSILON,
    Attack,
    NodeCrashed,
    PoisonedDataset,
)
from node.contribution import SLICE_BIAS, SLICE_WEIGHT
from node.so100 import ACTION_DIM

OTHER = "model.action_in_proj.weight"


def params(seed: int, step: float = 0.0) -> dict[str, np.ndarray]:
    """A global model (step 0) or a node's update of it (same base, plus a seeded step)."""
    base = np.random.default_rng(0)
    arrays = {OTHER: base.normal(size=(8, 5)), SLICE_WEIGHT: base.normal(size=(32, 12)),
              SLICE_BIAS: base.normal(size=32)}
    rng = np.random.default_rng(seed)
    return {k: (v + step * rng.normal(size=v.shape)).astype(np.float32) for k, v in arrays.items()}


G, N = params(0), params(1, step=0.01)


def delta(sent: dict, ref: dict = G) -> np.ndarray:
    """The update outside the proven rows, flattened."""
    parts = [sent[OTHER] - ref[OTHER], sent[SLICE_WEIGHT][ACTION_DIM:] - ref[SLICE_WEIGHT][ACTION_DIM:],
             sent[SLICE_BIAS][ACTION_DIM:] - ref[SLICE_BIAS][ACTION_DIM:]]
    return np.concatenate([p.ravel() for p in parts])


def assert_slice_honest(sent: dict) -> None:
    for name in (SLICE_WEIGHT, SLICE_BIAS):
        np.testing.assert_array_equal(sent[name][:ACTION_DIM], N[name][:ACTION_DIM])


@pytest.mark.parametrize("kind", ["sign-flip", "scale", "noise", "alie", "ipm", "collude", "sybil-near-copy"])
def test_model_poisoning_keeps_proven_rows_and_dtype(kind):
    sent = Attack(kind).sent(G, N, seed=3)
    assert_slice_honest(sent)
    assert all(a.dtype == np.float32 and a.shape == G[k].shape for k, a in sent.items())
    assert not np.allclose(delta(sent), delta(N))


def test_sybil_copies_send_the_update_and_near_copies_a_little_noise_of_their_own():
    assert Attack("sybil-copy").sent(G, N, 3) is N  # the copied node's own update, as it trained it
    a, b = (delta(Attack("sybil-near-copy").sent(G, N, 3)) for _ in range(2))
    assert not np.array_equal(a, b)  # each copier draws its own noise: no hash matches
    assert np.linalg.norm(a - delta(N)) < 0.01 * np.linalg.norm(delta(N)) + 1e-3


def test_sign_flip_and_scale_as_before():
    d = delta(N)
    np.testing.assert_allclose(delta(Attack("sign-flip").sent(G, N, 0)), -d, atol=1e-6)
    np.testing.assert_allclose(delta(Attack("scale").sent(G, N, 0)), 10 * d, atol=1e-5)


def test_alie_shifts_each_coordinate_by_z_times_its_spread():
    d = delta(N)
    np.testing.assert_allclose(delta(Attack("alie").sent(G, N, 0)), d - ALIE_Z * np.abs(d), atol=1e-6)


def test_ipm_points_against_the_honest_update():
    d, sent = delta(N), delta(Attack("ipm").sent(G, N, 0))
    np.testing.assert_allclose(sent, -IPM_EPSILON * d, atol=1e-6)
    assert float(sent @ d) < 0


def test_colluders_send_identical_arrays_outside_their_slices():
    other_node = params(2, step=0.01)
    a, b = Attack("collude").sent(G, N, seed=5), Attack("collude").sent(G, other_node, seed=5)
    np.testing.assert_array_equal(delta(a), delta(b))
    assert not np.array_equal(a[SLICE_WEIGHT][:ACTION_DIM], b[SLICE_WEIGHT][:ACTION_DIM])  # each proves its own
    assert not np.array_equal(delta(a), delta(Attack("collude").sent(G, N, seed=6)))  # fresh each round
    assert not np.allclose(delta(a), delta(Attack("noise").sent(G, N, seed=5)))


def test_free_riders_prove_what_they_send():
    rider = Attack("free-rider")
    assert all(np.array_equal(rider.sent(G, N, 0)[k], G[k]) for k in G)
    assert rider.proven(G, N) is G
    noisy = Attack("free-rider-noise")
    sent = noisy.sent(G, N, seed=1)
    diff = np.concatenate([(sent[k] - G[k]).ravel() for k in G])
    assert 0 < np.abs(diff).max() < 10 * FREE_RIDER_SIGMA and abs(diff.std() - FREE_RIDER_SIGMA) < FREE_RIDER_SIGMA / 4
    assert noisy.proven(G, N, sent) is sent


def test_honest_and_gate_attacks_prove_the_trained_update():
    for kind in (None, "sign-flip", "proof-swap", "alie", "poison-negate"):
        assert Attack(kind).proven(G, N, {}) is N


def test_proof_swap_and_malformed_unchanged():
    swap = Attack("proof-swap").sent(G, N, 0)
    assert not np.allclose(swap[SLICE_WEIGHT][:ACTION_DIM], N[SLICE_WEIGHT][:ACTION_DIM])
    bad = Attack("malformed").sent(G, N, 0)
    assert np.isnan(bad[OTHER]).sum() == 1 and not np.isnan(N[OTHER]).any()


def test_crash_after_training_from_its_round_on():
    Attack("crash").check_alive(CRASH_ROUND - 1)
    for r in (CRASH_ROUND, CRASH_ROUND + 1):
        with pytest.raises(NodeCrashed):
            Attack("crash").check_alive(r)
    Attack(None).check_alive(CRASH_ROUND)


class Frames(torch.utils.data.Dataset):
    """Stands in for a LeRobotDataset: frames with an action chunk that identifies the frame."""

    meta = "the dataset's metadata"

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict:
        return {"action": torch.full((3, 6), float(i + 1)), "action_is_pad": torch.tensor([False, False, i == 9]),
                "observation.state": torch.full((6,), float(i))}


def test_poisoned_datasets_corrupt_actions_only():
    frames = Frames()
    assert Attack(None).dataset(frames) is frames and Attack("sign-flip").dataset(frames) is frames
    negated = Attack("poison-negate").dataset(frames)
    assert isinstance(negated, PoisonedDataset) and len(negated) == 10 and negated.meta == frames.meta
    assert torch.equal(negated[4]["action"], -frames[4]["action"])
    assert torch.equal(negated[4]["observation.state"], frames[4]["observation.state"])
    shuffled = Attack("poison-shuffle").dataset(frames)
    sources = [int(shuffled[i]["action"][0, 0]) - 1 for i in range(10)]
    assert sorted(sources) == list(range(10)) and sources != list(range(10))  # a permutation, not the identity
    for i, src in enumerate(sources):
        assert torch.equal(shuffled[i]["action_is_pad"], frames[src]["action_is_pad"])
        assert torch.equal(shuffled[i]["observation.state"], frames[i]["observation.state"])
    batch = next(iter(torch.utils.data.DataLoader(shuffled, batch_size=4)))
    assert batch["action"].shape == (4, 3, 6)


def test_every_attack_is_described_and_unknown_ones_refused():
    for kind in ATTACKS:
        assert Attack(kind).kind == kind and ATTACKS[kind]
    with pytest.raises(ValueError, match="unknown adversary"):
        Attack("teleport")


def test_fabricated_witness_makes_any_slice_fit_exactly():
    """The free witnesses: Y := X_n·W_nᵀ + b_n gives loss_after = 0 for whatever W_n the fabricator sends."""
    from prover import Slice
    from prover.statement import statement_losses

    rng = np.random.default_rng(7)
    a, h, m = ACTION_DIM, 12, 5
    honest = Slice(rng.normal(size=(a, h)), rng.normal(size=a), rng.normal(size=(a, h)), rng.normal(size=a),
                   rng.normal(size=(m, h)), rng.normal(size=(m, h)), rng.normal(size=(m, a)))
    for kind in ("fabricate-witness", "fabricate-free-rider"):
        forged = Attack(kind).witness(honest)
        before, after = statement_losses(*forged.arrays())
        assert after < 1e-10 < before
        np.testing.assert_array_equal(forged.X_n, honest.X_n)  # only the targets are made up
    assert Attack("sign-flip").witness(honest) is honest


def test_fabricators_send_and_prove_the_same_arrays():
    """fabricate-witness sends θ_g − Δ everywhere, slice included; fabricate-free-rider θ_g + tiny noise; both prove
    exactly what they send (the binding check then holds)."""
    flip = Attack("fabricate-witness")
    sent = flip.sent(G, N, seed=1)
    for name in G:
        np.testing.assert_allclose(sent[name] - G[name], -(N[name] - G[name]), atol=1e-6)
    assert flip.proven(G, N, sent) is sent
    rider = Attack("fabricate-free-rider")
    sent = rider.sent(G, N, seed=1)
    spread = np.concatenate([(sent[k] - G[k]).ravel() for k in G])
    assert 0.5 * FREE_RIDER_SIGMA < spread.std() < 2 * FREE_RIDER_SIGMA
    assert rider.proven(G, N, sent) is sent
