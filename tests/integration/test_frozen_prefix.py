"""The frozen VLM prefix, computed once per validation batch, gives the loss SmolVLA's own forward gives, and is
reused only where no reply can change it."""

from __future__ import annotations

import numpy as np
import pytest


def build(spec: str, validation: str, cache_dir):
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla

    meta = load_metadata(validation)
    bundle = make_smolvla(spec, meta, cache_dir, seed=0)
    return bundle, load_dataset(validation, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))


def nudged(arrays: dict[str, np.ndarray], scale: float, only: str = "", seed: int = 0) -> dict[str, np.ndarray]:
    """``arrays`` with Gaussian noise added to the parameters whose name contains ``only``."""
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, scale, v.shape).astype(np.float32) if only in k else v for k, v in arrays.items()}


@pytest.mark.parametrize("spec", ["tiny", "learn"])
def test_cached_loss_equals_smolvla_forward(spec, synthetic, cache_dir):
    import torch

    from aggregator.protocol.frozen_prefix import cached_loss, freeze_batch
    from node.params import get_trainable, set_trainable
    from node.train import mean_loss

    bundle, data = build(spec, synthetic.validation, cache_dir)
    policy = bundle.policy
    set_trainable(policy, nudged(get_trainable(policy), 0.05))  # away from the initialisation's zeros and ones
    policy.eval()
    for start, seed in ((0, 11), (4, 12)):
        batch = bundle.preprocessor(torch.utils.data.default_collate([data[i] for i in range(start, start + 4)]))
        full = mean_loss(policy, [dict(batch)], seed)[0]
        cached = float(cached_loss(policy, freeze_batch(policy, dict(batch), seed)))
        assert cached == pytest.approx(full, rel=1e-6, abs=1e-7)
        other = float(cached_loss(policy, freeze_batch(policy, dict(batch), seed + 1)))
        assert other != pytest.approx(full, rel=1e-4)  # the seed sets the noise and time: the check can fail


def test_validator_reuses_the_prefix_of_a_frozen_vlm_only(synthetic, cache_dir):
    from aggregator.protocol.validation import ValidationConfig, Validator
    from node.params import get_trainable

    bundle, data = build("tiny", synthetic.validation, cache_dir)
    glob = get_trainable(bundle.policy)
    rv = Validator(bundle, data, ValidationConfig(batches=2, batch_size=4), seed=3).open(1, glob)
    assert rv.prefixes is not None and len(rv.prefixes) == 2
    for only in ("state_proj", "lm_expert", "action_out_proj"):  # the state token and the expert run per reply
        upd = nudged(glob, 0.05, only)
        cached = rv.score(upd)
        assert cached != 0.0
        recomputed = round(rv.global_loss - rv.scorer.loss(upd, rv.batches, rv.seed), 6)  # no prefixes: full forward
        assert abs(cached - recomputed) <= 1e-6, only

    bundle, data = build("learn", synthetic.validation, cache_dir)  # its VLM trains: a reply can change the prefix
    glob = get_trainable(bundle.policy)
    rv = Validator(bundle, data, ValidationConfig(batches=2, batch_size=4), seed=3).open(1, glob)
    assert rv.prefixes is None
    assert rv.score(nudged(glob, 0.05, "vision_model")) != 0.0
