"""The validation score: is an update useful on data the node did not choose?

A proof shows that the signed losses are the committed slice's losses on data the node committed to, but that data
(X_g, X_n, Y) is the node's free choice (docs/trust-model.md). The aggregator therefore also holds a validation set
that no node trains on (and that is not the final evaluation set), and scores every update that passed the proof
checks on the same k batches of it, drawn from the round's seed:

    s = L_val(θ_g) − L_val(θ_n)      (> 0: the update lowers the validation loss)

The batches are decoded and preprocessed once per round. Where the VLM is frozen (what a reply carries is the
action expert and projections), the image and instruction tokens' keys and values at every VLM layer are the same
for every reply, and they are computed once per batch too (``frozen_prefix``): each reply then costs k passes of
the state token and the action expert only. SmolVLA's flow-matching noise and time are seeded per batch, so θ_g and
θ_n are scored on exactly the same draws, and the same global model, update and round seed give the same score on
any machine (``score_decimals`` absorbs the last-bit differences of float32 sums between CPU kernels).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from node.params import set_trainable
from node.train import mean_loss, torch_threads

if TYPE_CHECKING:
    from aggregator.protocol.frozen_prefix import FrozenPrefix

log = logging.getLogger(__name__)

SCORE_DECIMALS = 6  # a score is rounded to 1e-6: well above float32 noise in a mean loss, far below any real effect


@dataclass(frozen=True)
class ValidationConfig:
    """How updates are scored: ``batches`` × ``batch_size`` validation frames per round, with ``threads`` torch
    threads (1: a small model's forward pass is fastest on one thread, and a second one only spins on a busy
    machine — 0.04 against 1.0 cpu s per tiny batch measured under load; raise it for the full-size model)."""

    batches: int = 4
    batch_size: int = 8
    threads: int = 1

    def __post_init__(self) -> None:
        if self.batches < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("validation batches, batch size and threads must be at least 1")


def round_indices(n_frames: int, count: int, seed: int, round_: int) -> np.ndarray:
    """The validation frames of a round: ``count`` distinct frames (all of them, shuffled, if fewer), from the
    federation's seed and the round number, so anyone with the validation set can redraw them."""
    rng = np.random.default_rng([seed, round_])
    if count >= n_frames:
        return rng.permutation(n_frames)
    return rng.choice(n_frames, size=count, replace=False)


@dataclass
class RoundValidation:
    """One round's scoring: its preprocessed batches, their frozen prefixes (None where the VLM trains) and the
    global model's loss on them."""

    round: int
    seed: int
    batches: list[dict]
    global_loss: float
    scorer: Validator
    prefixes: list[FrozenPrefix] | None = None

    def score(self, arrays: dict[str, np.ndarray]) -> float:
        """s = L_val(θ_g) − L_val(θ_n), rounded to ``SCORE_DECIMALS``."""
        loss = self.scorer.loss(arrays, self.batches, self.seed, self.prefixes)
        return round(self.global_loss - loss, SCORE_DECIMALS)


@dataclass
class Validator:
    """The aggregator's validation set and the policy it scores updates with (the server's own bundle)."""

    bundle: object
    dataset: object
    config: ValidationConfig
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one policy: one score at a time

    def open(self, round_: int, global_arrays: dict[str, np.ndarray]) -> RoundValidation:
        """Draw and preprocess the round's batches and their frozen prefixes; score the global model on them."""
        cfg = self.config
        idx = round_indices(len(self.dataset), cfg.batches * cfg.batch_size, self.seed, round_)
        batches = []
        for start in range(0, len(idx), cfg.batch_size):
            frames = [self.dataset[int(i)] for i in idx[start:start + cfg.batch_size]]
            batches.append(self.bundle.preprocessor(torch.utils.data.default_collate(frames)))
        seed = int(np.random.default_rng([self.seed, round_, 1]).integers(2**31))
        prefixes = self.freeze(batches, seed)
        global_loss = self.loss(global_arrays, batches, seed, prefixes)
        log.info("round %d: validation loss of the global model %.6f on %d frames (frozen prefix %s)", round_,
                 global_loss, len(idx), "cached" if prefixes else "recomputed per reply: the VLM trains")
        return RoundValidation(round_, seed, batches, global_loss, self, prefixes)

    def freeze(self, batches: list[dict], seed: int) -> list[FrozenPrefix] | None:
        """The batches' frozen prefixes, batch i with the noise and time of ``seed + i`` (``mean_loss``'s); None
        where a reply can change the VLM."""
        from aggregator.protocol.frozen_prefix import freeze_batch, prefix_is_frozen  # LeRobot: only with a policy

        policy = self.bundle.policy
        if not prefix_is_frozen(policy):
            return None
        with self._lock, torch_threads(self.config.threads):
            policy.eval()
            return [freeze_batch(policy, dict(b), seed + i) for i, b in enumerate(batches)]

    @torch.no_grad()
    def loss(self, arrays: dict[str, np.ndarray], batches: list[dict], seed: int,
             prefixes: list[FrozenPrefix] | None = None) -> float:
        """Mean flow-matching loss of ``arrays`` over ``batches``, noise and time seeded per batch; with the
        batches' ``prefixes``, only the state token and the action expert run."""
        from aggregator.protocol.frozen_prefix import mean_cached_loss

        with self._lock:  # the gate scores replies from several threads; the policy holds one set of parameters
            set_trainable(self.bundle.policy, arrays)
            with torch_threads(self.config.threads):
                if prefixes is not None:
                    return mean_cached_loss(self.bundle.policy, prefixes)
                # a copy of each batch: forward may add keys to it
                return mean_loss(self.bundle.policy, (dict(b) for b in batches), seed)[0]
