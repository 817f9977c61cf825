"""Slice capture on the real (tiny) SmolVLA: the slice's loss is the model's own unreduced loss at the captured
positions, the capture is deterministic, and the policy is left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prover.capture import WEIGHT_KEY, capture_positions, capture_slice
from prover.statement import slice_loss

pytestmark = pytest.mark.integration

ROWS, ACTION_DIM, SEED = 16, 6, 7


@pytest.fixture(scope="module")
def tiny(synthetic, cache_dir):
    """The tiny SmolVLA, a preprocessed batch of a node's data, and global/node trainable states."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.params import get_trainable

    meta = load_metadata(synthetic.nodes[0])
    bundle = make_smolvla("tiny", meta, Path(cache_dir))
    dataset = load_dataset(synthetic.nodes[0], delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3, shuffle=False)))
    global_state = {k: torch.from_numpy(v) for k, v in get_trainable(bundle.policy).items()}
    rng = np.random.default_rng(0)
    node_state = {k: v + torch.from_numpy(0.01 * rng.standard_normal(v.shape).astype(np.float32))
                  for k, v in global_state.items()}  # fmt: skip
    return bundle, bundle.preprocessor(batch), global_state, node_state


def model_losses(policy, batch, seed: int) -> torch.Tensor:
    """SmolVLA's own unreduced flow-matching loss (B, chunk, max_action_dim) with the capture's noise and time."""
    out = []
    inner = policy.model.forward  # SmolVLAPolicy calls model.forward directly: wrap it (a hook would not fire)

    def spy(*args, **kwargs):
        out.append(inner(*args, **kwargs).detach())
        return out[-1]

    policy.model.forward = spy
    try:
        bsize, chunk = batch["action"].shape[:2]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            noise = policy.model.sample_noise((bsize, chunk, policy.config.max_action_dim), "cpu")
            time = policy.model.sample_time(bsize, "cpu")
            policy.eval()
            policy.forward(dict(batch), noise=noise, time=time, reduction="none")
    finally:
        del policy.model.forward
    return out[-1]


def test_slice_losses_are_the_models_own_losses_at_the_positions(tiny):
    bundle, batch, global_state, node_state = tiny
    policy = bundle.policy
    slice_ = capture_slice(policy, global_state, node_state, batch, rows=ROWS, action_dim=ACTION_DIM, seed=SEED)
    assert slice_.shape.actions == ACTION_DIM and slice_.shape.rows == ROWS
    assert slice_.shape.hidden == policy.model.action_out_proj.in_features
    positions = capture_positions(batch, ROWS, SEED)
    for state, (w, b, x) in ((global_state, (slice_.W_g, slice_.b_g, slice_.X_g)),
                             (node_state, (slice_.W_n, slice_.b_n, slice_.X_n))):  # fmt: skip
        policy.load_state_dict(state, strict=False)
        losses = model_losses(policy, batch, SEED)
        per_position = losses[positions[:, 0], positions[:, 1], :ACTION_DIM].mean(dim=1).numpy()
        residual = x @ w.T + b - slice_.Y
        np.testing.assert_allclose((residual**2).mean(axis=1), per_position, rtol=1e-4, atol=1e-6)
        assert slice_loss(w, b, x, slice_.Y) == pytest.approx(per_position.mean(), rel=1e-4)
    assert slice_.losses() == pytest.approx(
        (slice_loss(slice_.W_g, slice_.b_g, slice_.X_g, slice_.Y), slice_loss(slice_.W_n, slice_.b_n, slice_.X_n,
                                                                             slice_.Y)))  # fmt: skip
    np.testing.assert_array_equal(slice_.W_n, node_state[WEIGHT_KEY][:ACTION_DIM].numpy())
    assert not np.array_equal(slice_.X_g, slice_.X_n)  # the node's trunk differs from the global one


def test_capture_is_deterministic_and_restores_the_policy(tiny):
    bundle, batch, global_state, node_state = tiny
    policy = bundle.policy
    policy.load_state_dict(node_state, strict=False)  # the policy holds something else than the global model
    policy.train()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    first = capture_slice(policy, global_state, node_state, batch, rows=ROWS, action_dim=ACTION_DIM, seed=SEED)
    again = capture_slice(policy, global_state, node_state, batch, rows=ROWS, action_dim=ACTION_DIM, seed=SEED)
    other = capture_slice(policy, global_state, node_state, batch, rows=ROWS, action_dim=ACTION_DIM, seed=SEED + 1)
    for a, b in zip(first.arrays(), again.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.Y, other.Y)
    after = policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert policy.training


def test_capture_refuses_bad_requests(tiny):
    bundle, batch, global_state, node_state = tiny
    with pytest.raises(ValueError, match="unpadded positions"):
        capture_slice(bundle.policy, global_state, node_state, batch, rows=10_000, action_dim=ACTION_DIM, seed=0)
    with pytest.raises(KeyError, match="action_out_proj"):
        capture_slice(bundle.policy, {}, node_state, batch, rows=ROWS, action_dim=ACTION_DIM, seed=0)
