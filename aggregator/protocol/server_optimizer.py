"""A server-side optimizer over the verified mean: FedAvgM and FedAdam (Reddi et al. 2021, "Adaptive Federated
Optimization"), the rules of Flower's ``FedAvgM`` and ``FedAdam`` written as one pure step.

The round's selection (``aggregator.protocol.selection``) decides *which* verified updates are averaged and with
what weight; this step decides how far the global model moves along that mean. The pseudo-gradient of a round is
Δ = mean − θ_g, and

- ``avgm``: v ← β·v + Δ; θ ← θ_g + η·v (Hsu et al. 2019; η = 1, β = 0 is the plain mean);
- ``adam``: m ← β1·m + (1 − β1)·Δ; v ← β2·v + (1 − β2)·Δ²; θ ← θ_g + η_t·m / (√v + τ), with Adam's bias correction
  η_t = η·√(1 − β2^t) / (1 − β1^t) at the server's t-th step.

Why: each honest node's local steps fit its own strip of the workspace, so one round's mean moves the global model
a little and partly in directions that cancel from round to round (docs/fed-vs-central.md, "Levers"). Momentum keeps
what the rounds agree on.

Reproducible by anyone: the step is deterministic (float64 arithmetic, no randomness), and its inputs are the
previous global model, the round's selected verified updates and their recorded weights (summary.json and the
registry's records), and the public settings (``ServerOptimizer``). The state is itself a function of the earlier
rounds' pseudo-gradients, so replaying the run's rounds in order rebuilds every global model and its hash (the one
``closeRound`` names). A round that keeps the global model (nothing useful) takes no step and leaves the state as it
was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("none", "avgm", "adam")


@dataclass(frozen=True)
class ServerOptimizer:
    """The public settings of the server's step (``FederationConfig.server_*``)."""

    kind: str = "none"  # "none": the new global model is the mean itself
    lr: float = 1.0  # η
    beta1: float = 0.9  # FedAvgM's momentum β, FedAdam's β1
    beta2: float = 0.99  # FedAdam only
    tau: float = 1e-3  # FedAdam's adaptivity floor (Reddi et al.: 1e-3 works across their tasks)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"server optimizer {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.lr <= 0 or self.tau <= 0:
            raise ValueError("the server lr and tau must be above 0")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError("beta1 and beta2 must be in [0, 1)")


@dataclass
class ServerState:
    """What the step carries from round to round: the steps taken and the moments (float64, per array)."""

    steps: int = 0
    m: dict[str, np.ndarray] = field(default_factory=dict)
    v: dict[str, np.ndarray] = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez`` (a resumed run reads them back with ``from_arrays``)."""
        return {"steps": np.array(self.steps), **{f"m/{k}": a for k, a in self.m.items()},
                **{f"v/{k}": a for k, a in self.v.items()}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ServerState:
        return cls(int(arrays["steps"]), {k[2:]: np.asarray(a) for k, a in arrays.items() if k.startswith("m/")},
                   {k[2:]: np.asarray(a) for k, a in arrays.items() if k.startswith("v/")})


def server_step(global_arrays: dict[str, np.ndarray], mean: dict[str, np.ndarray], state: ServerState,
                opt: ServerOptimizer) -> tuple[dict[str, np.ndarray], ServerState]:
    """The new global model from the round's verified mean, and the state after the step (``state`` is not
    changed). Arrays keep their names, shapes and dtypes."""
    if opt.kind == "none":
        return {k: np.array(a) for k, a in mean.items()}, state
    t = state.steps + 1
    new, m, v = {}, {}, {}
    for name, g in global_arrays.items():
        g64 = np.asarray(g, np.float64)
        delta = np.asarray(mean[name], np.float64) - g64
        if opt.kind == "avgm":
            m[name] = opt.beta1 * state.m.get(name, 0.0) + delta
            step = opt.lr * m[name]
        else:
            m[name] = opt.beta1 * state.m.get(name, 0.0) + (1.0 - opt.beta1) * delta
            v[name] = opt.beta2 * state.v.get(name, 0.0) + (1.0 - opt.beta2) * delta**2
            rate = opt.lr * np.sqrt(1.0 - opt.beta2**t) / (1.0 - opt.beta1**t)
            step = rate * m[name] / (np.sqrt(v[name]) + opt.tau)
        new[name] = (g64 + step).astype(np.asarray(g).dtype)
    return new, ServerState(t, m, v)
