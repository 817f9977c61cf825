"""LoRA mode: nodes train and send adapters (LeRobot's ``wrap_with_peft``), not SmolVLA's 100 M trainable values.

The policy is wrapped with LeRobot's PEFT entry point and SmolVLA's default targets (the action expert's q/v
projections, the state, action and time projections, ``action_out_proj`` among them), at the federation's rank.
The adapters are FFA-LoRA's (Sun et al., ICLR 2024): every A stays at its seeded initialisation, and only B trains
and travels. The federation's model is then linear in what it averages: mean over nodes of s·B_i·A = s·mean(B_i)·A,
so averaging the B's is exactly averaging the nodes' weight changes (averaging A and B separately is not:
LORA-NOTES.md measures the error), and DP noise on B reaches the weights once, not squared.

Everything that handles "the trainable set" (the wire, hashes, the gate, the validation score, selection, DP)
then handles the B's unchanged. What differs is the proof slice: ``action_out_proj``'s effective weights
W = W_base + s·B·A, computed by ``LoraSlice`` from the fixed base and A the same way by node and aggregator.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from node.model import save_processors
from node.so100 import ACTION_DIM
from prover.hashing import params_hash

log = logging.getLogger(__name__)

A_SEED = 20240416
"""Seed of the frozen A matrices: one public initialisation, the same on every node and the aggregator."""
ADAPTER = "default"  # PEFT's adapter name
OUT_PROJ = "model.action_out_proj"


def wrap_lora(policy, rank: int, base_ref: str):
    """Wrap ``policy`` in place with LeRobot's PEFT (SmolVLA's default targets, rank ``rank``), freeze every A.

    Returns the ``PeftModel`` (it saves the adapter in LeRobot's PEFT format); ``policy`` itself keeps working as
    the SmolVLA policy it was, its targeted layers now LoRA layers. ``base_ref`` names the base model in the
    adapter's config (LeRobot loads the base from there); LeRobot asks for one before it wraps.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, not {rank}")
    known = policy.config.pretrained_path
    policy.config.pretrained_path = known or base_ref  # LeRobot refuses to wrap a policy without one
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(A_SEED)
            peft_model = policy.wrap_with_peft(peft_cli_overrides={"r": rank})
    finally:
        policy.config.pretrained_path = known  # the config is make_policy's: a made-up path must not outlive this
    for name, param in policy.named_parameters():
        if ".lora_A." in name:
            param.requires_grad_(False)
    return peft_model


def is_lora(policy) -> bool:
    """Whether ``policy`` runs in LoRA mode (its proof layer is a LoRA layer)."""
    return hasattr(policy.model.action_out_proj, "base_layer")


def frozen_hash(policy) -> str:
    """The hash of what LoRA mode keeps fixed and the model depends on: every wrapped layer's base weights and its
    A, in ``named_parameters`` order. The round config carries the aggregator's; a node with another base or
    other A's would train a different model, so it refuses (``check_frozen``)."""
    return params_hash([p.detach().cpu().numpy().astype(np.float32) for name, p in policy.named_parameters()
                        if ".base_layer." in name or ".lora_A." in name])


def base_state(policy) -> dict[str, torch.Tensor]:
    """The base policy's state dict, without its adapters: what ``save_pretrained`` of the unwrapped policy holds."""
    return {name.replace(".base_layer.", "."): t for name, t in policy.state_dict().items() if ".lora_" not in name}


@dataclass(frozen=True)
class LoraSlice:
    """The statement's slice in LoRA mode: the first A rows of ``action_out_proj``'s effective weights.

    W = W_base + s·B·A and b = b_base (adapters leave the bias alone). Computed in float64, elementwise and
    summed in one fixed order, then rounded to float32: the node and the aggregator get the same bytes, so the
    aggregator's commitment of the slice is the node's.
    """

    weight: np.ndarray  # (A, H) base rows
    bias: np.ndarray  # (A,)
    lora_a: np.ndarray  # (r, H)
    scale: float
    b_name: str  # the B of action_out_proj in the trainable set

    def __call__(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return effective_weight(self.weight, self.lora_a, arrays[self.b_name][:ACTION_DIM], self.scale), self.bias


def effective_weight(base: np.ndarray, lora_a: np.ndarray, lora_b: np.ndarray, scale: float) -> np.ndarray:
    """W_base + scale·B·A, float32 (see ``LoraSlice``)."""
    product = (lora_b.astype(np.float64)[:, :, None] * lora_a.astype(np.float64)[None, :, :]).sum(axis=1)
    return (base.astype(np.float64) + scale * product).astype(np.float32)


def lora_slice(policy) -> LoraSlice:
    """The fixed parts of ``policy``'s LoRA slice (its base rows, A and scale), read once."""
    layer = policy.model.action_out_proj

    def rows(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)[:ACTION_DIM].copy()

    return LoraSlice(rows(layer.base_layer.weight), rows(layer.base_layer.bias),
                     layer.lora_A[ADAPTER].weight.detach().cpu().numpy().astype(np.float32).copy(),
                     float(layer.scaling[ADAPTER]), f"{OUT_PROJ}.lora_B.{ADAPTER}.weight")


def adapter_key(name: str) -> str:
    """A trainable parameter's key in PEFT's ``adapter_model.safetensors`` (PEFT drops the adapter's name)."""
    return "base_model.model." + name.replace(f".{ADAPTER}.", ".")


def save_adapter(bundle, path: Path, base_ref: str) -> Path:
    """LeRobot's PEFT checkpoint: ``adapter_config.json`` (its ``base_model_name_or_path`` is ``base_ref``) and
    ``adapter_model.safetensors`` (A and B of every adapted layer), the policy's ``config.json`` (``use_peft``) and
    its processors. LeRobot's ``make_policy`` with ``pretrained_path`` = ``path`` loads the base, then the adapter."""
    bundle.peft.peft_config[ADAPTER].base_model_name_or_path = base_ref
    bundle.peft.save_pretrained(str(path))
    bundle.policy.config.save_pretrained(path)
    save_processors(bundle, path)
    return Path(path)


def save_plain(policy, path: Path, merged: bool) -> Path:
    """``policy`` (LoRA layers in it) as a SmolVLA folder without adapters, as ``save_pretrained`` writes one
    (``SmolVLAPolicy.from_pretrained`` loads it): its base (``merged`` False) or the base with every adapter merged
    in (W + s·B·A: the merged checkpoint a release adds on request). Processors are the caller's to add."""
    state = {k: v.detach().clone().contiguous() for k, v in base_state(policy).items()}
    if merged:
        for name, module in policy.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
                state[f"{name}.weight"] += module.get_delta_weight(ADAPTER).detach()
    policy.config.use_peft = False
    try:
        policy.save_pretrained(path, state_dict=state)
    finally:
        policy.config.use_peft = True
    return Path(path)


def base_reference(bundle, checkpoints: Path) -> str:
    """Where LeRobot finds the base of this run's adapters: the Hub repo or folder the base came from, or, for a
    base built here (``tiny``, ``full-random``), its folder ``checkpoints/base``, written once."""
    ref = bundle.policy.config.pretrained_path
    if ref:
        return str(ref)
    base = Path(checkpoints) / "base"
    if not (base / "model.safetensors").exists():
        save_plain(bundle.policy, base, merged=False)
        save_processors(bundle, base)
    return str(base.resolve())


def round_config(policy, rank: int) -> dict:
    """What a round's config says of LoRA mode: the rank, and the hash of the fixed base and A's (``frozen_hash``)."""
    return {"lora-rank": rank, "lora-base-hash": frozen_hash(policy)} if rank else {"lora-rank": 0}


def config_rank(config) -> int:
    """The federation's LoRA rank as a round's config says it (0: full updates; a config without one is 0)."""
    return int(config.get("lora-rank", 0))


def check_frozen(policy, config) -> None:
    """Refuse to train when this node's fixed base and A's are not the aggregator's: it would train another model."""
    from node.errors import UserError

    expected = config.get("lora-base-hash")
    if expected is None:
        return
    actual = frozen_hash(policy)
    if actual != expected:
        raise UserError(f"this round's LoRA base and adapters' A hash to {expected}, this node's to "
                        f"{actual}: another base model, model spec or zk0 version")


BASE_FOLDER = "base"  # a release's own copy of a base built here (aggregator/tools/release.py)


def adapter_arrays(model) -> dict[str, np.ndarray]:
    """The B's of a LoRA model (a run's policy, or a ``PeftModel`` as LeRobot loads a checkpoint), in
    ``named_parameters`` order: LoRA mode's exchanged set, whose hash ``closeRound`` records."""
    return {name: p.detach().cpu().numpy().astype(np.float32) for name, p in model.named_parameters()
            if ".lora_B." in name}


def load_adapter(path: Path, config):
    """A LoRA checkpoint as LeRobot loads one (``lerobot.rollout.context``): the base policy by the adapter's
    reference (a release's own ``base/`` first), then ``PeftModel.from_pretrained``; the ``PeftModel``."""
    from lerobot.policies.factory import get_policy_class
    from peft import PeftConfig, PeftModel

    path = Path(path)
    peft_config = PeftConfig.from_pretrained(str(path))
    own = path / BASE_FOLDER
    base = str(own.resolve()) if (own / "model.safetensors").is_file() else peft_config.base_model_name_or_path
    policy = get_policy_class(config.type).from_pretrained(base, config=config)
    return PeftModel.from_pretrained(policy, str(path), config=peft_config)


def carry_base(out: Path) -> None:
    """A release's adapter whose base is a local folder (a base built here): copy it into ``out/base`` and name it
    there, by absolute path (LeRobot resolves the name against the caller's folder). A Hub base stays named."""
    config_path = Path(out) / "adapter_config.json"
    adapter = json.loads(config_path.read_text())
    base = Path(adapter.get("base_model_name_or_path") or "")
    if not (base / "model.safetensors").is_file():
        return
    shutil.copytree(base, Path(out) / BASE_FOLDER)
    adapter["base_model_name_or_path"] = str((Path(out) / BASE_FOLDER).resolve())
    config_path.write_text(json.dumps(adapter, indent=2) + "\n")
