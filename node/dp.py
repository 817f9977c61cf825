"""Client-side differential privacy for a node's update (DP-FedAvg's clip-and-noise, done on the node).

The node clips its update Δ = θ_n − θ_g to L2 norm C over every array it sends, adds Gaussian noise N(0, σ²C²) to
each coordinate and sends θ_g + noised Δ. The proof and the signature are made afterwards, over the noised update
that is sent, so the gate's binding (INTEGRITY, UNBOUND) holds as before.

Why on the node, not on the server: Krum may pass one node's update almost whole, so the sensitivity of the
aggregate to one node is C, not C/n as in an average; server-side noise scaled for an average would state a
guarantee that does not hold. Noise added by each node holds whatever the aggregator does with the update.

Privacy unit: one node's whole dataset in one round (user-level). Every node takes part in every round, so there is
no amplification by sampling (sample rate 1). Accounting is Opacus' RDP accountant, never our own arithmetic.
docs/privacy.md says what this protects and what it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from node.errors import UserError

DEFAULT_DELTA = 1e-5
DEFAULT_CLIP = 0.01  # C for the tiny SmolVLA (docs/privacy.md: how it was chosen)
SAMPLE_RATE = 1.0  # every node in every round: no amplification by subsampling


@dataclass(frozen=True)
class DPConfig:
    """The federation's DP settings, as each round's config carries them to the nodes.

    ``noise_multiplier`` σ = 0 clips without noise (ε = ∞): useful to see what clipping alone costs.
    """

    clip: float = DEFAULT_CLIP
    noise_multiplier: float = 1.0
    delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise UserError(f"dp-clip must be a positive number (the L2 bound C of an update), got {self.clip}")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise UserError(f"dp-noise-multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise UserError(f"dp-delta must be in (0, 1), got {self.delta}")

    @classmethod
    def for_epsilon(cls, epsilon: float, rounds: int, clip: float = DEFAULT_CLIP,
                    delta: float = DEFAULT_DELTA) -> DPConfig:
        """The σ that spends ``epsilon`` (at ``delta``) over ``rounds`` rounds, calibrated by the accountant."""
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise UserError(f"dp-epsilon must be a positive number, got {epsilon}")
        if rounds < 1:
            raise UserError("a privacy budget needs at least one round")
        return cls(clip=clip, noise_multiplier=noise_for_epsilon(epsilon, rounds, delta), delta=delta)

    @classmethod
    def from_round_config(cls, config) -> DPConfig | None:
        """The round config → DP settings; None when the federation runs without DP (no ``dp-clip``)."""
        if float(config.get("dp-clip", 0.0)) <= 0:
            return None
        return cls(float(config["dp-clip"]), float(config["dp-noise-multiplier"]),
                   float(config.get("dp-delta", DEFAULT_DELTA)))

    def round_config(self) -> dict[str, float]:
        """The keys a round's config carries to the nodes."""
        return {"dp-clip": self.clip, "dp-noise-multiplier": self.noise_multiplier, "dp-delta": self.delta}

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise on each coordinate: σ·C."""
        return self.noise_multiplier * self.clip

    def epsilon(self, rounds: int) -> float:
        """ε spent (at ``delta``) by a node after ``rounds`` rounds with these settings."""
        return epsilon_spent(self.noise_multiplier, rounds, self.delta)


def check_budget(dp: DPConfig | None, server_round: int, max_epsilon: float | None) -> None:
    """The node's own limit: refuse a round that would take its spent ε above ``max_epsilon`` (None: no limit).

    The aggregator chooses C and σ; a node that wants a guarantee checks them here, before it trains, rather than
    trusting the round config (a federation without DP, or with too little noise, is refused)."""
    if max_epsilon is None:
        return
    if dp is None:
        raise UserError(f"this node requires differential privacy (ε ≤ {max_epsilon:g}), but the federation runs "
                        "without it (no dp-clip in the round config): refusing to send an update")
    spent = dp.epsilon(server_round)
    if spent > max_epsilon:
        raise UserError(f"round {server_round} would bring this node's privacy loss to ε = {spent:.3g} (δ = "
                        f"{dp.delta:g}, σ = {dp.noise_multiplier:.3g}), above its limit {max_epsilon:g}: refusing")


def update_norm(global_arrays: dict[str, np.ndarray], node_arrays: dict[str, np.ndarray]) -> float:
    """L2 norm of Δ = θ_n − θ_g over every array (in float64)."""
    return math.sqrt(sum(float(np.sum((node_arrays[k].astype(np.float64) - g.astype(np.float64)) ** 2))
                         for k, g in global_arrays.items()))


def clip_update(global_arrays: dict[str, np.ndarray], node_arrays: dict[str, np.ndarray],
                clip: float) -> dict[str, np.ndarray]:
    """Δ scaled by min(1, C/‖Δ‖) (float64), so that ‖Δ‖ ≤ C over all arrays together (flat clipping)."""
    if set(global_arrays) != set(node_arrays):
        raise ValueError("the update and the global model do not have the same arrays")
    norm = update_norm(global_arrays, node_arrays)
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return {k: (node_arrays[k].astype(np.float64) - g.astype(np.float64)) * scale for k, g in global_arrays.items()}


def privatize(global_arrays: dict[str, np.ndarray], node_arrays: dict[str, np.ndarray], cfg: DPConfig,
              rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """What the node sends: θ_g + clip(Δ, C) + N(0, σ²C²) on every coordinate, as float32 in the global's order.

    ``rng`` is for tests only: by default the noise comes from fresh OS entropy. Never seed it from the round's
    seed: that seed is public, and whoever knows the noise can subtract it.
    """
    rng = rng if rng is not None else np.random.default_rng()
    clipped = clip_update(global_arrays, node_arrays, cfg.clip)
    sent = {}
    for name, g in global_arrays.items():
        noise = rng.normal(0.0, cfg.noise_std, g.shape) if cfg.noise_std > 0 else 0.0
        sent[name] = (g.astype(np.float64) + clipped[name] + noise).astype(np.float32)
    return sent


def epsilon_spent(noise_multiplier: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """ε after ``rounds`` Gaussian releases of noise multiplier σ at ``delta`` (Opacus' RDP accountant, sample
    rate 1); ∞ without noise, 0 before the first round."""
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=SAMPLE_RATE)
    return float(accountant.get_epsilon(delta))


def noise_for_epsilon(epsilon: float, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """The smallest σ whose ε after ``rounds`` rounds is at most ``epsilon`` (Opacus' calibration: within 0.01)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=SAMPLE_RATE,
                                      steps=rounds, accountant="rdp"))
