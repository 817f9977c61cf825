"""SmolVLA construction: the real pretrained policy from the Hub, or a tiny one built offline.

A model spec names where a policy comes from:

- ``hf:lerobot/smolvla_base`` (or any Hub repo): LeRobot's ``make_policy`` with the pretrained weights. Needs
  the Hugging Face Hub; fails fast with a one-line error where it is unreachable.
- ``local:<dir>``: a policy saved with ``save_pretrained`` (a checkpoint of a zk0 run, say).
- ``tiny``: the same SmolVLA architecture with a small SmolVLM config and a local BPE tokenizer, written to a
  folder once (no network) and reused. Tests and the demo use it.
- ``learn``: a small SmolVLA whose whole model trains (its VLM included), sized for behaviour cloning on the
  simulator's expert on CPU (its measured learning curves: docs/fed-vs-central.md).
- ``full-random``: the real SmolVLM2-500M architecture with random weights (benchmarks and GPU runs offline).

After construction every path goes through the same code: LeRobot's ``make_policy`` and its processors.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from node.errors import UserError
from node.so100 import ACTION_DIM, JOINTS

log = logging.getLogger(__name__)

# Fixed normalisation for SO-100 state and action, in so100_follower units (degrees, gripper 0..100).
# Every node and the server use the same constants: per-node dataset statistics would put each node's model in
# a different normalised space, and would leak a summary of the node's private data. A model spec names its
# table; a saved policy carries the one it was trained with (its processors).
SO100_MEAN = [0.0, 0.0, 0.0, 0.0, 0.0, 50.0]
SO100_STD = [60.0, 60.0, 60.0, 60.0, 60.0, 30.0]
SO100_SIM_MEAN = [4.0, -8.0, 5.0, 92.0, 1.0, 27.0]
SO100_SIM_STD = [26.0, 25.0, 33.0, 13.0, 23.0, 14.0]
"""The simulated SO-100's workspace: the scripted expert's joint mean and spread over both tasks (default
variation, ``sim.expert_joint_stats``; a public property of the task, no node's data). The generic table's
60-degree spread is 2-5x wider than the arm's motion in this workspace: a 2-degree error, ~1 cm at the gripper,
then weighs 10-30x less in the flow-matching loss, and the policy never learns the precision reaching needs
(docs/fed-vs-central.md)."""
NORMALIZATION: dict[str, tuple[list[float], list[float]]] = {
    "so100": (SO100_MEAN, SO100_STD), "so100-sim": (SO100_SIM_MEAN, SO100_SIM_STD)}

# Words the tiny tokenizer is trained on. It is byte-level, so any task string still tokenizes.
_TOKENIZER_CORPUS = [
    "pick up the red cube and place it on the target",
    "pick up the cube and put it in the bowl",
    "push the block to the goal",
    "reach the target with the gripper",
    "wave the arm left and right",
    "open and close the gripper",
    "move the arm in a circle",
    "stack the blocks on top of each other",
    "sort the objects by color",
    "fold the cloth",
    "grasp the blue object and lift it",
]


@dataclass(frozen=True)
class VLMShape:
    """The SmolVLM backbone SmolVLA is built on, and the SmolVLA settings that depend on it."""

    name: str
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    image_size: int
    patch_size: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    text_intermediate: int
    scale_factor: int
    vocab_size: int  # the text model's embedding rows (the local tokenizer uses the first few hundred)
    num_vlm_layers: int  # SmolVLA keeps the first N layers of the VLM
    chunk_size: int
    n_action_steps: int | None = None
    """Actions executed from each predicted chunk before the policy looks again (None: the whole chunk)."""
    train_vlm: bool = False
    """Train the VLM too, vision encoder included (SmolVLA's ``train_expert_only`` and ``freeze_vision_encoder``
    off). A randomly initialised VLM must learn to see; a pretrained one is kept frozen, as SmolVLA does."""
    normalization: str = "so100"
    """State and action normalisation table (``NORMALIZATION``)."""

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATION:
            raise ValueError(f"unknown normalization {self.normalization!r}; known: {sorted(NORMALIZATION)}")


TINY = VLMShape("tiny-smolvlm", vision_hidden=32, vision_layers=2, vision_heads=2, image_size=64, patch_size=8,
                text_hidden=64, text_layers=4, text_heads=4, text_kv_heads=2, head_dim=16, text_intermediate=256,
                scale_factor=2, vocab_size=0, num_vlm_layers=4, chunk_size=10)
"""Offline SmolVLA for tests and the demo: 415 k parameters, action expert 48 wide (STACK.md)."""

SMOLVLM2_500M = VLMShape("smolvlm2-500m-arch", vision_hidden=768, vision_layers=12, vision_heads=12, image_size=512,
                         patch_size=16, text_hidden=960, text_layers=32, text_heads=15, text_kv_heads=5, head_dim=64,
                         text_intermediate=2560, scale_factor=4, vocab_size=49280, num_vlm_layers=16, chunk_size=50)
"""SmolVLM2-500M-Video-Instruct's architecture, written by hand (random weights: the Hub is unreachable here).
SmolVLA on it has ~450 M parameters, ~100 M trainable, and an action expert 720 wide, as the real one."""

LEARN = VLMShape("learn-smolvlm-64", vision_hidden=32, vision_layers=2, vision_heads=4, image_size=64, patch_size=8,
                 text_hidden=64, text_layers=4, text_heads=4, text_kv_heads=2, head_dim=16, text_intermediate=256,
                 scale_factor=2, vocab_size=0, num_vlm_layers=2, chunk_size=10, n_action_steps=5, train_vlm=True,
                 normalization="so100-sim")
"""A SmolVLA small enough to train by behaviour cloning on 2 CPU cores: the whole model trains (its random VLM
must learn to see where the target is), 2 VLM and 2 expert layers, 64x64 images, a new look every 5 steps;
0.32 M parameters, 0.23 M trainable, action expert 48 wide (the same proof slice as ``tiny``). ~0.12 cpu s a step
at batch 16. Its measured learning curves: docs/fed-vs-central.md "Learning the task"."""

SHAPES = {"tiny": TINY, "learn": LEARN, "full-random": SMOLVLM2_500M}


def build_vlm(root: Path, shape: VLMShape = TINY) -> Path:
    """Write a SmolVLM config, image processor and local BPE tokenizer to ``root/<shape.name>`` (cached)."""
    out = Path(root) / shape.name
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
               "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_TOKENIZER_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<end_of_utterance>", pad_token="<pad>",
        unk_token="<|endoftext|>",
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    )
    vocab = max(len(tokenizer), shape.vocab_size)
    config = SmolVLMConfig(
        vision_config={"hidden_size": shape.vision_hidden, "num_hidden_layers": shape.vision_layers,
                       "num_attention_heads": shape.vision_heads, "intermediate_size": 4 * shape.vision_hidden,
                       "image_size": shape.image_size, "patch_size": shape.patch_size},
        text_config={"model_type": "llama", "hidden_size": shape.text_hidden,
                     "num_hidden_layers": shape.text_layers, "num_attention_heads": shape.text_heads,
                     "num_key_value_heads": shape.text_kv_heads, "head_dim": shape.head_dim,
                     "intermediate_size": shape.text_intermediate, "vocab_size": vocab,
                     "max_position_embeddings": 512},
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=shape.scale_factor,
        vocab_size=vocab,
    )
    config.save_pretrained(tmp)
    image_processor = SmolVLMImageProcessor(
        do_resize=False, do_image_splitting=False, max_image_size={"longest_edge": shape.image_size},
        size={"longest_edge": shape.image_size},
    )
    SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(),
                     image_seq_len=(shape.image_size // shape.patch_size // shape.scale_factor) ** 2,
                     ).save_pretrained(tmp)
    (tmp / "zk0-shape.json").write_text(json.dumps(shape.__dict__, indent=2))
    tmp.rename(out) if not out.exists() else None
    return out


def _smolvla_config(vlm_dir: Path, shape: VLMShape, device: str):
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature  # noqa: F401
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    return SmolVLAConfig(
        vlm_model_name=str(vlm_dir),
        load_vlm_weights=False,
        num_vlm_layers=shape.num_vlm_layers,
        resize_imgs_with_padding=(shape.image_size, shape.image_size),
        chunk_size=shape.chunk_size,
        n_action_steps=shape.n_action_steps or shape.chunk_size,
        train_expert_only=not shape.train_vlm,
        freeze_vision_encoder=not shape.train_vlm,
        device=device,
        push_to_hub=False,
    )


def so100_stats(table: str = "so100") -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics shared by every participant: one of ``NORMALIZATION``, for state and action."""
    mean, std = (torch.tensor(v) for v in NORMALIZATION[table])
    stats = {key: {"mean": mean.clone(), "std": std.clone(), "min": mean - 3 * std, "max": mean + 3 * std}
             for key in ("observation.state", "action")}
    return stats


@dataclass
class PolicyBundle:
    """A policy with the processors that feed it, built one way for every caller."""

    policy: torch.nn.Module
    preprocessor: object
    postprocessor: object
    peft: object | None = None  # LoRA mode: the PeftModel around ``policy`` (node/lora.py); it saves the adapter

    @property
    def config(self):
        return self.policy.config


def make_smolvla(spec: str, ds_meta, cache_dir: Path, device: str = "cpu", seed: int = 0,
                 lora_rank: int = 0) -> PolicyBundle:
    """Build a SmolVLA policy from a model spec (``tiny``, ``hf:<repo>``, ``local:<dir>``) for a dataset; with
    ``lora_rank``, wrapped for LoRA mode (``node.lora``: only the adapters' B matrices train)."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    torch.manual_seed(seed)
    saved = None  # a saved policy folder whose processors (its normalisation) come with it
    table = "so100"
    if spec in SHAPES:
        cfg = _smolvla_config(build_vlm(Path(cache_dir), SHAPES[spec]), SHAPES[spec], device)
        table = SHAPES[spec].normalization
    elif spec.startswith(("hf:", "local:")):
        kind, _, path = spec.partition(":")
        cfg = _pretrained_config(kind, path, device)
        if kind == "local" and (Path(path) / f"{PREPROCESSOR_NAME}.json").exists():
            saved = path
    else:
        raise UserError(f"unknown model spec {spec!r}: use {', '.join(SHAPES)}, 'hf:<repo_id>' or 'local:<dir>'")
    _check_action_features(ds_meta)
    policy = make_policy(cfg, ds_meta=ds_meta)
    policy.to(device)
    peft = None
    if lora_rank:
        from node.lora import wrap_lora

        peft = wrap_lora(policy, lora_rank, base_ref=f"zk0:{spec}@seed{seed}")
    if saved:
        pre, post = make_pre_post_processors(policy.config, pretrained_path=saved, preprocessor_overrides={
            "device_processor": {"device": device}}, postprocessor_overrides={"device_processor": {"device": "cpu"}})
    else:
        pre, post = make_pre_post_processors(policy.config, dataset_stats=so100_stats(table))
    return PolicyBundle(policy, pre, post, peft)


PREPROCESSOR_NAME = "policy_preprocessor"


def save_policy(bundle: PolicyBundle, path: Path) -> Path:
    """LeRobot's ``save_pretrained`` folder, processors included: ``local:<path>`` rebuilds the same policy with
    the normalisation it was trained with, and ``SmolVLAPolicy.from_pretrained(path)`` loads it. In LoRA mode,
    LeRobot's PEFT folder: the adapter and its base's reference (``node.lora.save_adapter``)."""
    if bundle.peft is not None:
        from node.lora import base_reference, save_adapter

        return save_adapter(bundle, path, base_reference(bundle, Path(path).parent))
    bundle.policy.save_pretrained(path)
    save_processors(bundle, path)
    return Path(path)


def save_processors(bundle: PolicyBundle, path: Path) -> None:
    """The pre- and postprocessor (the normalisation the policy was trained with) beside a saved policy."""
    bundle.preprocessor.save_pretrained(path)
    bundle.postprocessor.save_pretrained(path)


def _pretrained_config(kind: str, path: str, device: str):
    from lerobot.configs.policies import PreTrainedConfig

    if kind == "local" and not (Path(path) / "config.json").exists():
        raise UserError(f"no saved policy at {path}: expected a folder written by save_pretrained (config.json)")
    try:
        cfg = PreTrainedConfig.from_pretrained(path)
    except Exception as err:  # the Hub client raises many types for "offline"/"not found"
        raise UserError(
            f"cannot load policy {kind}:{path} ({type(err).__name__}). The Hugging Face Hub is unreachable or the "
            "repo does not exist; use 'tiny' or 'local:<dir>' offline"
        ) from None
    cfg.pretrained_path = Path(path) if kind == "local" else path
    cfg.device = device
    return cfg


def _check_action_features(ds_meta) -> None:
    names = ds_meta.features.get("action", {}).get("names")
    if names is not None and list(names) != list(JOINTS):
        raise UserError(f"dataset action names {names} are not SO-100's {list(JOINTS)}")
    if tuple(ds_meta.features["action"]["shape"]) != (ACTION_DIM,):
        raise UserError(f"dataset action shape {ds_meta.features['action']['shape']} is not ({ACTION_DIM},)")
