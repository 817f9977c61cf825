"""Capture the slice a node proves: m positions of its own data, seen through the global and its own model.

One SmolVLA training forward pass per model, with the same seeded noise and time, gives at every (sample, chunk
step) position the input of ``action_out_proj`` (X_g with the global parameters, X_n with the node's, via a
forward hook) and the flow-matching target u_t = noise − action (Y, the same for both). ``rows`` positions are
drawn with the seed, skipping padded actions; only the robot's ``action_dim`` real action dimensions are kept.
W/b are the first ``action_dim`` rows of ``action_out_proj`` in the global and in the node's state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from prover.statement import FIELD_NAMES, SliceShape, stack, statement_losses, with_ones

log = logging.getLogger(__name__)

OUT_PROJ = "model.action_out_proj"
WEIGHT_KEY, BIAS_KEY = f"{OUT_PROJ}.weight", f"{OUT_PROJ}.bias"
ACTION, ACTION_IS_PAD = "action", "action_is_pad"


@dataclass(frozen=True)
class Slice:
    """The statement's inputs, float32: W_g (A,H), b_g (A,), W_n (A,H), b_n (A,), X_g (m,H), X_n (m,H), Y (m,A)."""

    W_g: np.ndarray  # noqa: N815 (the statement's names)
    b_g: np.ndarray
    W_n: np.ndarray  # noqa: N815
    b_n: np.ndarray
    X_g: np.ndarray  # noqa: N815
    X_n: np.ndarray  # noqa: N815
    Y: np.ndarray  # noqa: N815

    def __post_init__(self) -> None:
        for name in FIELD_NAMES:
            value = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"Slice.{name} has non-finite values")
            object.__setattr__(self, name, value)
        expected = self.shape.input_shapes()
        got = tuple(a.shape for a in self.arrays())
        if got != expected:
            raise ValueError(f"Slice shapes {got} are inconsistent: expected {expected} for {self.shape}")

    @property
    def shape(self) -> SliceShape:
        if self.W_g.ndim != 2 or self.X_g.ndim != 2:
            raise ValueError(f"Slice.W_g and Slice.X_g must be 2-D, got {self.W_g.shape} and {self.X_g.shape}")
        return SliceShape(actions=self.W_g.shape[0], hidden=self.W_g.shape[1], rows=self.X_g.shape[0])

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The seven arrays, in FIELD_NAMES order."""
        return self.W_g, self.b_g, self.W_n, self.b_n, self.X_g, self.X_n, self.Y

    def inputs(self) -> tuple[np.ndarray, ...]:
        """The circuit's five inputs (P_g, P_n, X̃_g, X̃_n, Y), P = [W | b], X̃ = [X | 1]."""
        return (stack(self.W_g, self.b_g), stack(self.W_n, self.b_n), with_ones(self.X_g), with_ones(self.X_n),
                self.Y)  # fmt: skip

    def residuals(self) -> tuple[np.ndarray, np.ndarray]:
        """X_g·W_gᵀ + b_g − Y and X_n·W_nᵀ + b_n − Y, float64: what the circuit squares."""
        y = self.Y.astype(np.float64)
        return (self.X_g.astype(np.float64) @ self.W_g.T.astype(np.float64) + self.b_g - y,
                self.X_n.astype(np.float64) @ self.W_n.T.astype(np.float64) + self.b_n - y)  # fmt: skip

    def losses(self) -> tuple[float, float]:
        """(loss_before, loss_after) in float64."""
        return statement_losses(*self.arrays())


def capture_slice(policy, global_state: dict, node_state: dict, batch: dict, rows: int, action_dim: int,
                  seed: int, slices: tuple[tuple, tuple] | None = None) -> Slice:  # fmt: skip
    """Capture the node's slice on ``batch`` (already preprocessed: LeRobot's preprocessor applied).

    ``policy`` is a LeRobot ``SmolVLAPolicy``; ``global_state``/``node_state`` are state dicts (keys as in
    ``policy.state_dict()``, e.g. only the trainable subset). The policy's parameters and train/eval mode are
    restored afterwards. Deterministic for a given seed. ``batch`` needs at least ``rows`` unpadded
    (sample, chunk step) positions: with short episodes, use a few times ``rows / chunk_size`` samples.
    ``slices``: ((W_g, b_g), (W_n, b_n)) where the layer's weights are not entries of the states (a LoRA layer's
    are its base plus the adapter's product); by default the first ``action_dim`` rows of the states' own.
    """
    import torch

    for name, state in (("global_state", global_state), ("node_state", node_state)):
        missing = [k for k in (WEIGHT_KEY, BIAS_KEY) if k not in state] if slices is None else []
        if missing:
            raise KeyError(f"{name} lacks {missing}: pass the policy's state dict (keys as in policy.state_dict())")
        unknown = sorted(set(state) - set(policy.state_dict()))
        if unknown:
            raise KeyError(f"{name} has keys the policy does not: {unknown[:5]}")
    pick = capture_positions(batch, rows, seed)
    actions = batch[ACTION]
    bsize, chunk = actions.shape[0], actions.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noise = policy.model.sample_noise((bsize, chunk, policy.config.max_action_dim), actions.device)
        time = policy.model.sample_time(bsize, actions.device)
    saved = {k: v.detach().clone() for k, v in policy.state_dict().items() if k in global_state or k in node_state}
    was_training = policy.training
    try:
        features_g = _layer_inputs(policy, global_state, batch, noise, time)
        features_n = _layer_inputs(policy, node_state, batch, noise, time)
    finally:
        policy.load_state_dict(saved, strict=False)
        policy.train(was_training)
    targets = noise - policy.prepare_action(batch)  # u_t, (B, chunk, max_action_dim)
    b_idx, t_idx = torch.as_tensor(pick[:, 0]), torch.as_tensor(pick[:, 1])

    def rows_of(state: dict) -> tuple[np.ndarray, np.ndarray]:
        return tuple(torch.as_tensor(state[k]).detach().cpu().to(torch.float32)[:action_dim].numpy()
                     for k in (WEIGHT_KEY, BIAS_KEY))

    (W_g, b_g), (W_n, b_n) = slices or (rows_of(global_state), rows_of(node_state))  # noqa: N806
    return Slice(
        W_g=W_g,
        b_g=b_g,
        W_n=W_n,
        b_n=b_n,
        X_g=features_g[b_idx, t_idx].cpu().numpy(),
        X_n=features_n[b_idx, t_idx].cpu().numpy(),
        Y=targets[b_idx, t_idx, :action_dim].cpu().numpy(),
    )


def _layer_inputs(policy, state: dict, batch: dict, noise, time):
    """The input of ``action_out_proj`` (B, chunk, H) in one eval forward pass with ``state`` loaded."""
    import torch

    captured: list = []
    hook = policy.model.action_out_proj.register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach())
    )
    try:
        policy.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
        policy.eval()
        with torch.no_grad():
            policy.forward(dict(batch), noise=noise, time=time, reduction="none")
    finally:
        hook.remove()
    return captured[-1].to(torch.float32)


def capture_positions(batch: dict, rows: int, seed: int) -> np.ndarray:
    """The (sample, chunk step) positions :func:`capture_slice` picks for ``batch`` (for tests and audits)."""
    actions = batch[ACTION]
    valid = np.ones(tuple(actions.shape[:2]), dtype=bool)
    if ACTION_IS_PAD in batch:
        valid = ~batch[ACTION_IS_PAD].cpu().numpy().astype(bool)
    positions = np.argwhere(valid)
    if len(positions) < rows:
        raise ValueError(f"the batch has {len(positions)} unpadded positions, the slice needs rows={rows}: "
                         f"capture on a larger batch")  # fmt: skip
    rng = np.random.default_rng(seed)
    return positions[np.sort(rng.choice(len(positions), size=rows, replace=False))]
