"""Local training (FedProx) and loss evaluation of a SmolVLA policy with LeRobot's own pieces.

FedProx adds μ/2·‖θ − θ_g‖² over the trainable parameters to SmolVLA's flow-matching loss, so a node's update
stays near the global model on non-IID data. The optimizer is the policy's own preset (AdamW for SmolVLA), built
fresh each round or, given the state a node kept from its last round (``optimizer_state``), carrying on with its
moments: a fresh Adam's first steps are its largest (docs/fed-vs-central.md, "Levers").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from node.params import get_trainable, set_trainable

log = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the caller's. On shared cores a small model's second
    thread mostly spins: a step can take 10x the cpu seconds (docs/fed-vs-central.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class TrainConfig:
    """One node's local training for one round."""

    steps: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    proximal_mu: float = 0.01
    seed: int = 0
    progress: bool = True
    keep_optimizer: bool = False  # return the optimizer's state (TrainResult.optimizer_state) for the next round

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if self.learning_rate <= 0 or self.proximal_mu < 0:
            raise ValueError("learning_rate must be > 0 and proximal_mu >= 0")


@dataclass
class TrainResult:
    loss_first: float
    loss_last: float
    loss_mean: float
    steps: int
    seconds: float
    num_examples: int
    optimizer_state: dict[str, torch.Tensor] | None = None  # with keep_optimizer: its per-parameter state after


def _batches(dataset, batch_size: int, seed: int, shuffle: bool):
    """Endless batches: reshuffled each pass with a seeded generator, so runs repeat exactly."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=False,
                              num_workers=0)


def fedprox_train(bundle, dataset, global_arrays: dict[str, np.ndarray], cfg: TrainConfig,
                  optimizer_state: dict[str, torch.Tensor] | None = None,
                  after_step: Callable[[int], None] | None = None,
                  learning_rate_at: Callable[[int], float] | None = None) -> TrainResult:
    """Train from ``global_arrays`` for ``cfg.steps`` steps; the policy ends holding the node's parameters.

    ``optimizer_state``: the state an earlier round returned (``TrainResult.optimizer_state``): the moments go on,
    the parameters start from the global model and the learning rate is this round's. ``after_step(n)`` is called
    after the n-th optimizer step (the benchmarks' snapshots of a centralized run). ``learning_rate_at(n)``: the
    rate of step n (0-based) instead of ``cfg.learning_rate`` (a centralized run following a federation's
    schedule)."""
    policy, pre = bundle.policy, bundle.preprocessor
    set_trainable(policy, global_arrays)
    params = [p for p in policy.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in params]
    preset = policy.config.get_optimizer_preset()
    preset.lr = cfg.learning_rate
    optimizer = preset.build(params)
    if optimizer_state:
        load_optimizer_state(optimizer, optimizer_state)
    torch.manual_seed(cfg.seed)
    policy.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    batches = _batches(dataset, cfg.batch_size, cfg.seed, shuffle=True)
    for step in tqdm(range(cfg.steps), desc="train", disable=not cfg.progress, leave=False):
        loss, _ = policy.forward(pre(next(batches)))
        if cfg.proximal_mu > 0:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors, strict=True))
            loss = loss + 0.5 * cfg.proximal_mu * prox
        if learning_rate_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step)
        optimizer.zero_grad()
        loss.backward()
        if preset.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(params, preset.grad_clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if after_step is not None:
            after_step(step + 1)
    policy.eval()
    return TrainResult(losses[0], losses[-1], float(np.mean(losses)), cfg.steps, time.perf_counter() - t0,
                       cfg.steps * cfg.batch_size, optimizer_state_of(optimizer) if cfg.keep_optimizer else None)


def optimizer_state_of(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state, flat (``<parameter index>.<name>``: AdamW's step, exp_avg,
    exp_avg_sq), copied: what a node keeps between rounds. The hyper-parameters are left out: each round sets its
    own."""
    return {f"{i}.{name}": torch.as_tensor(value).detach().clone()
            for i, state in optimizer.state_dict()["state"].items() for name, value in state.items()}


def load_optimizer_state(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Put ``optimizer_state_of``'s flat state back into a fresh ``optimizer`` of the same parameters."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.clone()
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


@torch.no_grad()
def evaluate_loss(bundle, dataset, arrays: dict[str, np.ndarray] | None = None, batch_size: int = 8,
                  max_batches: int | None = None, seed: int = 0) -> tuple[float, int]:
    """Mean flow-matching loss over ``dataset`` (fixed noise and time), and the examples seen.

    The noise and flow time SmolVLA samples are drawn from a fixed seed, so the same model on the same data
    always gets the same number: eval losses of different rounds (and of a reloaded checkpoint) compare. With
    ``max_batches``, the frames are spread evenly over the whole dataset: the first ones would all come from the
    start of its first episode (4 batches of 8: one arm leaving its start pose), a measure of little.
    """
    if arrays is not None:
        set_trainable(bundle.policy, arrays)
    if max_batches is not None and max_batches * batch_size < len(dataset):
        dataset = Subset(dataset, np.linspace(0, len(dataset) - 1, max_batches * batch_size).round().astype(int))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    return mean_loss(bundle.policy, (bundle.preprocessor(b) for b in islice(loader, max_batches)), seed)


@torch.no_grad()
def mean_loss(policy, batches, seed: int) -> tuple[float, int]:
    """Mean flow-matching loss over preprocessed ``batches`` (noise and time seeded by ``seed`` + batch index),
    and the examples seen: the one loss both the server evaluation and the validation score use."""
    policy.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(batches):
        with torch.random.fork_rng():
            torch.manual_seed(seed + i)
            loss, _ = policy.forward(batch)
        n = len(batch["action"])
        total += float(loss) * n
        count += n
    return total / max(count, 1), count


def snapshot(policy) -> dict[str, np.ndarray]:
    """The policy's current trainable parameters (what a node sends)."""
    return get_trainable(policy)
