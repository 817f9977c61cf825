"""Drift correction: a node's local steps also move towards where the federation went, away from where its own
data alone took it last round (SCAFFOLD's control variates, Karimireddy et al. 2020, in the space of the node's
optimizer steps).

With non-IID data each node's steps pull towards its own data's optimum, and the mean of the nodes' models is the
worse for it (docs/fed-vs-central.md, "Where the gap is"). SCAFFOLD corrects each local step by c − c_i, the
federation's mean direction minus the node's own of the last round. Taken from what the node already has, the
global model θ_t it was sent this round and the model y_{t−1} it trained last round, the K steps of a round add
(θ_t − y_{t−1}) / K each: nothing extra travels, and the correction stays on the node (its Flower
``context.state``), like its optimizer's moments.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

LAST_MODEL = "drift-last-model"  # context.state: the model this node trained in its last round
LAST_ROUND = "drift-last-round"  # context.state: that round's number


def drift_shift(state: RecordDict, global_arrays: dict[str, np.ndarray], server_round: int,
                steps: int) -> dict[str, np.ndarray] | None:
    """(θ_t − y_{t−1}) / K, each step's correction; None when the node did not train the round before this one
    (its first round, or it missed one: an older model says nothing about where the federation went since)."""
    if LAST_MODEL not in state or int(state[LAST_ROUND]["round"]) != server_round - 1:
        return None
    last = {name: array.numpy() for name, array in state[LAST_MODEL].items()}
    return {name: (np.asarray(g, np.float32) - last[name]) / steps for name, g in global_arrays.items()}


def remember(state: RecordDict, trained: dict[str, np.ndarray], server_round: int) -> None:
    """Keep the model this round trained (before any DP noise: it never leaves the node) for the next round."""
    state[LAST_MODEL] = ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in trained.items()})
    state[LAST_ROUND] = ConfigRecord({"round": server_round})


def shifting(policy: torch.nn.Module, shift: dict[str, np.ndarray]) -> Callable[[int], None]:
    """``fedprox_train``'s ``after_step``: add ``shift`` to the trainable parameters after every optimizer step."""
    params = [(p, torch.from_numpy(shift[name]).to(p.dtype)) for name, p in policy.named_parameters()
              if p.requires_grad]

    def after_step(_: int) -> None:
        with torch.no_grad():
            for p, s in params:
                p.add_(s)

    return after_step
