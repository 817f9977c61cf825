"""Client-side DP (node/dp.py): clipping, noise of the configured scale, and accounting that is Opacus' own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aggregator.config import FederationConfig
from node.dp import DPConfig, clip_update, epsilon_spent, noise_for_epsilon, privatize, update_norm
from node.errors import UserError


def model(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": (scale * rng.normal(size=(64, 32))).astype(np.float32),
            "a.bias": (scale * rng.normal(size=32)).astype(np.float32),
            "b.weight": (scale * rng.normal(size=(128, 64))).astype(np.float32)}


def test_clipped_update_norm_is_at_most_c_and_small_updates_are_kept():
    glob = model(0)
    big = {k: v + 0.5 * model(1)[k] for k, v in glob.items()}
    assert update_norm(glob, big) > 1.0
    clipped = clip_update(glob, big, clip=1.0)
    norm = math.sqrt(sum(float(np.sum(d ** 2)) for d in clipped.values()))
    assert norm == pytest.approx(1.0, rel=1e-9)
    direction = {k: big[k].astype(np.float64) - g for k, g in glob.items()}
    ratio = clipped["a.weight"] / direction["a.weight"]
    assert np.allclose(ratio, ratio.flat[0])  # one factor for every array: the direction is kept (flat clipping)
    small = {k: v + 1e-4 * model(2)[k] for k, v in glob.items()}
    kept = clip_update(glob, small, clip=1.0)
    assert all(np.allclose(kept[k], small[k].astype(np.float64) - glob[k]) for k in glob)


def test_sent_update_is_the_clipped_one_plus_noise_of_std_sigma_c():
    glob, node = model(0), {k: v + 0.5 * model(1)[k] for k, v in model(0).items()}
    cfg = DPConfig(clip=0.5, noise_multiplier=1.3)
    sent = privatize(glob, node, cfg, np.random.default_rng(7))
    assert list(sent) == list(glob) and all(sent[k].dtype == np.float32 for k in sent)
    clipped = clip_update(glob, node, cfg.clip)
    noise = np.concatenate([(sent[k].astype(np.float64) - glob[k] - clipped[k]).ravel() for k in glob])
    assert noise.size > 10_000
    assert noise.std() == pytest.approx(cfg.noise_multiplier * cfg.clip, rel=0.03)  # σ·C per coordinate
    assert abs(noise.mean()) < 4 * cfg.noise_std / math.sqrt(noise.size)
    assert np.abs(np.corrcoef(noise, np.concatenate([clipped[k].ravel() for k in glob]))[0, 1]) < 0.05
    again = privatize(glob, node, cfg)  # fresh entropy by default: two releases never share their noise
    assert not np.array_equal(again["a.weight"], sent["a.weight"])


def test_clipping_only_without_noise():
    glob, node = model(0), {k: v + 0.5 * model(1)[k] for k, v in model(0).items()}
    sent = privatize(glob, node, DPConfig(clip=0.5, noise_multiplier=0.0))
    assert update_norm(glob, sent) == pytest.approx(0.5, rel=1e-4)  # float32 rounding only
    assert DPConfig(clip=0.5, noise_multiplier=0.0).epsilon(3) == math.inf


def test_epsilon_is_the_rdp_accountants():
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(3):
        accountant.step(noise_multiplier=1.1, sample_rate=1.0)
    assert epsilon_spent(1.1, 3, 1e-5) == accountant.get_epsilon(1e-5)
    # The Gaussian mechanism's RDP is α/(2σ²) per release (sample rate 1); Opacus' conversion to (ε, δ) is at
    # least as tight as the classic ε = min_α [R·α/(2σ²) + log(1/δ)/(α − 1)].
    classic = min(3 * a / (2 * 1.1 ** 2) + math.log(1 / 1e-5) / (a - 1) for a in np.linspace(1.01, 200, 20000))
    assert epsilon_spent(1.1, 3, 1e-5) <= classic
    assert epsilon_spent(1.1, 1) < epsilon_spent(1.1, 2) < epsilon_spent(1.1, 3)  # composition over rounds
    assert epsilon_spent(2.0, 3) < epsilon_spent(1.0, 3)  # more noise, less spent
    assert epsilon_spent(1.1, 0) == 0.0


@pytest.mark.parametrize("target", [8.0, 3.0, 1.0])
def test_calibrated_noise_spends_the_target_budget(target):
    sigma = noise_for_epsilon(target, rounds=3, delta=1e-5)
    assert target - 0.02 <= epsilon_spent(sigma, 3, 1e-5) <= target
    cfg = DPConfig.for_epsilon(target, rounds=3, clip=0.01)
    assert cfg.noise_multiplier == sigma and cfg.epsilon(3) <= target


def test_round_config_round_trip_and_off_by_default():
    cfg = DPConfig(clip=0.02, noise_multiplier=1.5, delta=1e-6)
    assert DPConfig.from_round_config(cfg.round_config()) == cfg
    assert DPConfig.from_round_config({"local-steps": 20}) is None
    assert FederationConfig().dp() is None


def test_federation_config_calibrates_over_its_rounds():
    fed = FederationConfig(rounds=2, dp_epsilon=8.0)
    dp = fed.dp()
    assert dp.clip == 0.01 and dp.delta == 1e-5
    assert dp.noise_multiplier == noise_for_epsilon(8.0, 2, 1e-5)
    assert FederationConfig(dp_noise_multiplier=0.7, dp_clip=0.1).dp() == DPConfig(0.1, 0.7)
    assert FederationConfig(dp_clip=0.1).dp() == DPConfig(0.1, 0.0)  # clipping alone


@pytest.mark.parametrize("kwargs", [{"dp_epsilon": 8.0, "dp_noise_multiplier": 1.0}, {"dp_epsilon": -1.0},
                                    {"dp_clip": 0.1, "dp_delta": 1.5}])
def test_bad_dp_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        FederationConfig(**kwargs)


def test_bad_dp_round_config_is_a_user_error():
    with pytest.raises(UserError, match="dp-noise-multiplier"):
        DPConfig.from_round_config({"dp-clip": 0.1, "dp-noise-multiplier": -1.0})


def test_node_refuses_rounds_beyond_its_own_privacy_limit():
    from node.client_app import NodeSetup
    from node.dp import check_budget

    assert NodeSetup.from_node_config({"dataset": "local:/d", "dp-max-epsilon": 5}, {}).dp_max_epsilon == 5.0
    assert NodeSetup.from_node_config({"dataset": "local:/d"}, {}).dp_max_epsilon is None

    dp = DPConfig.for_epsilon(8.0, rounds=3)
    check_budget(dp, 3, max_epsilon=8.0)  # the federation's budget is within the node's limit
    check_budget(None, 1, max_epsilon=None)  # no limit: anything goes
    with pytest.raises(UserError, match="above its limit"):
        check_budget(dp, 2, max_epsilon=5.0)  # ε after round 2 is 6.3
    check_budget(dp, 1, max_epsilon=5.0)  # round 1 spends 4.2: still within
    with pytest.raises(UserError, match="without it"):
        check_budget(None, 1, max_epsilon=8.0)
    with pytest.raises(UserError, match="above its limit"):
        check_budget(DPConfig(clip=0.01, noise_multiplier=0.0), 1, max_epsilon=100.0)  # clipping alone: ε = ∞


def test_privacy_spent_in_summary_and_round_table(tmp_path):
    import io
    import json

    from rich.console import Console

    from aggregator.outputs import RunOutputs
    from aggregator.protocol.gate import Outcome
    from aggregator.protocol.strategy import RoundLog
    from aggregator.server_app import dp_round

    log = io.StringIO()
    out = RunOutputs(tmp_path, "run-dp", {"rounds": 3}, console=Console(file=log, width=200))
    dp = DPConfig.for_epsilon(8.0, rounds=3)
    rlog = RoundLog(2, "0x" + "aa" * 32, [Outcome(7, "SELECTED", address="0xA", dp_epsilon=dp.epsilon(2))])
    out.add_round(rlog, 1.2, "0x" + "bb" * 32, {"round": 3.0}, **dp_round(dp, 2))
    entry = json.loads((tmp_path / "summary.json").read_text())["rounds"][0]
    assert entry["dp_epsilon"] == pytest.approx(dp.epsilon(2)) and entry["dp_delta"] == 1e-5
    assert entry["nodes"][0]["dp_epsilon"] == pytest.approx(dp.epsilon(2))
    assert f"DP ε = {dp.epsilon(2):.2f} (δ = 1e-05)" in log.getvalue()
    assert dp_round(None, 2) == {} and dp_round(DPConfig(0.01, 0.0), 1)["dp_epsilon"] is None  # ∞: no number
