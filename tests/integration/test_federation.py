"""A real federation: Flower's simulation engine, LeRobot datasets, tiny SmolVLA, Krum on the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aggregator.config import FederationConfig
from aggregator.tools.demo import DemoConfig, run_demo
from node.datasets import load_dataset, load_metadata
from node.errors import UserError
from node.so100 import so100_features


@pytest.fixture(scope="module")
def run(cache_dir, synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "demo"
    fed = FederationConfig(local_steps=8, batch_size=8, eval_batches=3, krum_f=0, krum_m=2)
    summary = run_demo(DemoConfig(nodes=3, rounds=2, out=str(out), cache_dir=str(cache_dir), episodes=2,
                                  frames=24, data="synthetic", verify=False), fed)
    return out, summary


def test_two_rounds_three_nodes(run):
    out, summary = run
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for r in summary["rounds"]:
        assert np.isfinite(r["server_eval_loss"])
        statuses = [n["status"] for n in r["nodes"]]
        assert len(statuses) == 3 and set(statuses) <= {"SELECTED", "NOT_SELECTED"}
        # the demo scores on a validation set: every useful reply averaged in, weighted by usefulness
        assert statuses.count("SELECTED") >= 1 and sum(n["weight"] for n in r["nodes"]) == pytest.approx(1.0)
        assert all(n["update_hash"].startswith("0x") for n in r["nodes"])
    assert summary["final_eval_loss"] < summary["initial_eval_loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rounds"]) == 2 and all(len(r["client_train_loss"]) == 3 for r in metrics["rounds"])
    assert (out / "losses.png").stat().st_size > 1000
    assert len((out / "contributions.csv").read_text().strip().splitlines()) == 1 + 6


def test_checkpoint_reloads_with_same_eval_loss(run, synthetic, cache_dir):
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from node.model import make_smolvla
    from node.train import evaluate_loss

    out, summary = run
    ckpt = out / "checkpoints" / "round_2"
    assert isinstance(SmolVLAPolicy.from_pretrained(ckpt), SmolVLAPolicy)
    meta = load_metadata(synthetic.heldout)
    bundle = make_smolvla(f"local:{ckpt}", meta, Path(cache_dir))
    heldout = load_dataset(synthetic.heldout, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    loss, _ = evaluate_loss(bundle, heldout, max_batches=3)
    assert loss == pytest.approx(summary["rounds"][-1]["server_eval_loss"], rel=1e-5)


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
