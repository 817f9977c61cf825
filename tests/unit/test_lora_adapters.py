"""LoRA mode's pure parts (node/lora.py): the effective slice, why B alone is averaged, PEFT's file keys, settings."""

from __future__ import annotations

import numpy as np
import pytest

from node.lora import adapter_key, effective_weight


def test_effective_weight_is_base_plus_scaled_product_and_deterministic():
    rng = np.random.default_rng(0)
    base, a, b = (rng.normal(size=s).astype(np.float32) for s in ((6, 48), (4, 48), (6, 4)))
    got = effective_weight(base, a, b, 2.0)
    assert got.dtype == np.float32 and got.shape == (6, 48)
    expected = base.astype(np.float64) + 2.0 * b.astype(np.float64) @ a.astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert effective_weight(base, a, b, 2.0).tobytes() == got.tobytes()  # node and aggregator: the same bytes


def test_with_a_shared_a_the_mean_of_b_is_the_mean_of_the_weight_changes_and_separate_means_are_not():
    """FFA-LoRA's reason: s·mean(B_i)·A = mean(s·B_i·A) exactly; with each node's own A (standard LoRA) the product
    of the means is not the mean of the products."""
    rng = np.random.default_rng(1)
    base = np.zeros((6, 48), np.float32)
    a = rng.normal(size=(4, 48)).astype(np.float32)
    bs = [rng.normal(size=(6, 4)).astype(np.float32) for _ in range(5)]
    mean_of_changes = np.mean([effective_weight(base, a, b, 2.0) for b in bs], axis=0)
    change_of_mean = effective_weight(base, a, np.mean(bs, axis=0).astype(np.float32), 2.0)
    np.testing.assert_allclose(change_of_mean, mean_of_changes, rtol=1e-5, atol=1e-6)

    As = [a + rng.normal(scale=0.5, size=a.shape).astype(np.float32) for _ in bs]  # noqa: N806 (trained A's)
    exact = np.mean([b.astype(np.float64) @ ai for b, ai in zip(bs, As, strict=True)], axis=0)
    separate = np.mean(bs, axis=0) @ np.mean(As, axis=0)
    assert np.linalg.norm(separate - exact) / np.linalg.norm(exact) > 0.1


def test_adapter_keys_are_the_ones_peft_saves():
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Module()
            self.model.action_out_proj = torch.nn.Linear(8, 4)

    net = Net()
    peft_model = get_peft_model(net, LoraConfig(r=2, target_modules=["action_out_proj"]))
    names = [n for n, _ in net.named_parameters() if ".lora_" in n]
    assert sorted(adapter_key(n) for n in names) == sorted(get_peft_model_state_dict(peft_model))


def test_lora_rank_is_the_operators_and_a_node_refuses_another():
    from aggregator.config import FederationConfig
    from node.client_app import NodeSetup
    from node.errors import UserError

    with pytest.raises(UserError, match="lora-rank must not be in the run config"):
        FederationConfig.from_run_config({"lora-rank": 8}, environ={})
    assert FederationConfig.from_run_config({}, environ={}, operator={"lora_rank": 8}).lora_rank == 8
    with pytest.raises(UserError, match="lora-rank must be at least 0"):
        FederationConfig(lora_rank=-1)

    follows = NodeSetup(dataset="local:/data")
    assert follows.for_round({"lora-rank": 8}).lora_rank == 8 and follows.for_round({}).lora_rank == 0
    pinned = NodeSetup.from_node_config({"dataset": "local:/data", "lora-rank": 8}, {})
    assert pinned.for_round({"lora-rank": 8}).lora_rank == 8
    with pytest.raises(UserError, match="trains LoRA rank 4 .* set for rank 8"):
        pinned.for_round({"lora-rank": 4})
