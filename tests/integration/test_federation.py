"""A real federation without verification: Flower's simulation engine, LeRobot datasets, tiny SmolVLA."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aggregator.config import FederationConfig
from aggregator.tools.demo import DemoConfig, run_demo
from node.datasets import load_metadata
from node.errors import UserError
from node.so100 import so100_features


def test_an_unverified_run_averages_useful_replies_and_writes_its_summary(cache_dir, tmp_path):
    """``zk0agg demo --no-verify``: the plain federation (no proofs, signatures or chain) still scores each reply
    on the validation set and averages the useful ones. The verified run's outputs (metrics, plot, checkpoints)
    are pinned by test_verified_federation.py."""
    fed = FederationConfig(local_steps=4, batch_size=8, eval_batches=2, krum_f=0, krum_m=2)
    summary = run_demo(DemoConfig(nodes=3, rounds=1, out=str(tmp_path / "demo"), cache_dir=str(cache_dir),
                                  episodes=2, frames=24, data="synthetic", verify=False), fed)
    assert summary["chain"] is None and [r["round"] for r in summary["rounds"]] == [1]
    (entry,) = summary["rounds"]
    statuses = [n["status"] for n in entry["nodes"]]
    assert len(statuses) == 3 and set(statuses) <= {"SELECTED", "NOT_SELECTED"} and "SELECTED" in statuses
    assert sum(n["weight"] for n in entry["nodes"]) == pytest.approx(1.0)
    assert all(n["update_hash"].startswith("0x") for n in entry["nodes"])
    assert np.isfinite(entry["server_eval_loss"])
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["rounds"] == summary["rounds"]


def test_dataset_with_wrong_features_is_refused(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = so100_features(cameras=("front",), use_videos=False)
    features["action"] = {"dtype": "float32", "shape": (7,), "names": [f"j{i}" for i in range(7)]}
    ds = LeRobotDataset.create("local/seven", fps=30, features=features, root=tmp_path / "seven", use_videos=False)
    for _ in range(2):
        ds.add_frame({"observation.state": np.zeros(6, np.float32), "action": np.zeros(7, np.float32),
                      "observation.images.front": np.zeros((96, 128, 3), np.uint8), "task": "x"})
    ds.save_episode()
    ds.finalize()
    with pytest.raises(UserError, match="expected float32 \\(6,\\) for SO-100"):
        load_metadata(f"local:{tmp_path / 'seven'}")
