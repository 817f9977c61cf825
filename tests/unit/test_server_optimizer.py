"""The server's step along the verified mean (FedAvgM, FedAdam) by hand, and a node's kept AdamW state
(the strategy's step: tests/unit/test_strategy.py)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from aggregator.protocol.server_optimizer import ServerOptimizer, ServerState, server_step
from node.train import load_optimizer_state, optimizer_state_of

G = OrderedDict(w=np.array([[1.0, -2.0], [0.5, 0.0]], np.float32), b=np.array([0.25, -0.75], np.float32))


def shifted(arrays: dict, by: float) -> OrderedDict:
    return OrderedDict((k, (a + by).astype(np.float32)) for k, a in arrays.items())


def test_none_and_avgm_without_momentum_are_the_mean_itself():
    mean = shifted(G, 0.1)
    for opt in (ServerOptimizer("none"), ServerOptimizer("avgm", lr=1.0, beta1=0.0)):
        new, state = server_step(G, mean, ServerState(), opt)
        for k in G:
            np.testing.assert_array_equal(new[k], mean[k])
            assert new[k].dtype == np.float32


def test_avgm_carries_the_last_rounds_step_with_momentum():
    opt = ServerOptimizer("avgm", lr=0.5, beta1=0.9)
    new1, s1 = server_step(G, shifted(G, 0.2), ServerState(), opt)
    np.testing.assert_allclose(new1["w"], G["w"] + 0.5 * 0.2, rtol=1e-6)  # v1 = Δ1
    new2, s2 = server_step(new1, shifted(new1, -0.1), s1, opt)
    np.testing.assert_allclose(new2["b"], new1["b"] + 0.5 * (0.9 * 0.2 - 0.1), rtol=1e-5)  # v2 = βΔ1 + Δ2
    assert (s1.steps, s2.steps) == (1, 2)


def test_adam_first_step_is_lr_times_the_sign_and_bias_corrected():
    """m = (1−β1)Δ, v = (1−β2)Δ², corrected by √(1−β2)/(1−β1): a step of η·Δ/(|Δ| + τ/√(1−β2)) ≈ η·sign(Δ)."""
    opt = ServerOptimizer("adam", lr=0.01, beta1=0.9, beta2=0.99, tau=1e-9)
    mean = OrderedDict(w=G["w"] + np.array([[0.3, -0.002], [1e-4, 0.0]], np.float32), b=G["b"])
    new, state = server_step(G, mean, ServerState(), opt)
    np.testing.assert_allclose(new["w"] - G["w"], [[0.01, -0.01], [0.01, 0.0]], atol=2e-6)
    np.testing.assert_array_equal(new["b"], G["b"])
    np.testing.assert_allclose(state.m["w"], 0.1 * (mean["w"].astype(np.float64) - G["w"]), rtol=1e-6)


def test_the_step_is_deterministic_and_leaves_the_state_it_was_given():
    opt = ServerOptimizer("adam", lr=0.05)
    before = ServerState()
    _, s1 = server_step(G, shifted(G, 0.3), before, opt)
    a, _ = server_step(G, shifted(G, 0.1), s1, opt)
    b, _ = server_step(G, shifted(G, 0.1), ServerState.from_arrays(s1.to_arrays()), opt)
    assert before.steps == 0 and not before.m
    for k in G:
        assert a[k].tobytes() == b[k].tobytes()  # anyone replaying the rounds gets the same global model, bit for bit


@pytest.mark.parametrize("bad", [dict(kind="sgd"), dict(lr=0.0), dict(beta1=1.0), dict(tau=0.0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ServerOptimizer(**bad)


def test_a_nodes_adam_state_kept_and_loaded_goes_on_as_if_never_stopped():
    """What a node keeps between rounds (``optimizer_state_of``) put into a fresh AdamW takes the same step as the
    optimizer that never stopped."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randn(8, 2)

    def step(opt):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    first = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        step(first)
    kept = optimizer_state_of(first)
    start = [p.detach().clone() for p in model.parameters()]
    step(first)
    going_on = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    load_optimizer_state(fresh, kept)
    step(fresh)
    for p, q in zip(model.parameters(), going_on, strict=True):
        torch.testing.assert_close(p.detach(), q)
    assert float(kept["0.step"]) == 3.0 and set(kept) == {f"{i}.{n}" for i in (0, 1)
                                                          for n in ("step", "exp_avg", "exp_avg_sq")}
