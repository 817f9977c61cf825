"""The validation score on the real tiny SmolVLA and a real LeRobot validation set: what it measures, and that it
is reproducible (the score is what incentives pay for, so another machine must get the same number)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCORE_SCRIPT = """
import sys, numpy as np, torch
from lerobot.datasets.factory import resolve_delta_timestamps
from aggregator.protocol.validation import ValidationConfig, Validator
from node.datasets import load_dataset, load_metadata
from node.model import make_smolvla
meta = load_metadata(sys.argv[1])
bundle = make_smolvla("tiny", meta, sys.argv[2], seed=0)
data = load_dataset(sys.argv[1], delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
arrays = dict(np.load(sys.argv[3]))
names = [n for n in arrays if n.startswith("g:")]
glob = {n[2:]: arrays[n] for n in names}
upd = {n[2:]: arrays["u:" + n[2:]] for n in names}
rv = Validator(bundle, data, ValidationConfig(batches=2, batch_size=4, threads=int(sys.argv[4])), seed=7).open(3, glob)
print(repr(rv.score(upd)), repr(rv.global_loss))
"""


def score_elsewhere(validation: str, cache_dir: Path, arrays: Path, threads: int) -> tuple[float, float]:
    """The score as a fresh process scoring with another torch thread count computes it ("another machine")."""
    out = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, validation, str(cache_dir), str(arrays), str(threads)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    score, global_loss = out.stdout.split()[-2:]
    return float(score), float(global_loss)


@pytest.fixture(scope="module")
def scored(synthetic, cache_dir, tmp_path_factory):
    """The tiny SmolVLA, one honest update of node 0 (a few FedProx steps) and its poisoned twin (θ_g − Δ)."""
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps

    from aggregator.protocol.validation import ValidationConfig, Validator
    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.params import get_trainable
    from node.train import TrainConfig, fedprox_train

    torch.set_num_threads(2)
    meta = load_metadata(synthetic.validation)
    bundle = make_smolvla("tiny", meta, cache_dir, seed=0)
    dt = resolve_delta_timestamps(bundle.config, meta)
    glob = get_trainable(bundle.policy)
    fedprox_train(bundle, load_dataset(synthetic.nodes[0], delta_timestamps=dt), glob,
                  TrainConfig(steps=8, batch_size=4, progress=False))
    upd = get_trainable(bundle.policy)
    poisoned = {k: g - (upd[k] - g) for k, g in glob.items()}
    validator = Validator(bundle, load_dataset(synthetic.validation, delta_timestamps=dt),
                          ValidationConfig(batches=2, batch_size=4, threads=2), seed=7)
    path = tmp_path_factory.mktemp("validation") / "arrays.npz"
    np.savez(path, **{f"g:{k}": v for k, v in glob.items()}, **{f"u:{k}": v for k, v in upd.items()})
    return validator, glob, upd, poisoned, path


def test_validation_score_rewards_training_and_punishes_its_reverse(scored):
    validator, glob, upd, poisoned, _ = scored
    rv = validator.open(3, glob)
    assert rv.score(glob) == 0.0  # the global model against itself: exactly zero, same batches, same noise
    assert rv.score(upd) > 0 > rv.score(poisoned)
    assert validator.open(3, glob).batches[0]["action"].equal(rv.batches[0]["action"])  # the round's draw repeats
    assert not validator.open(4, glob).batches[0]["action"].equal(rv.batches[0]["action"])  # another round, others


def test_validation_score_is_reproducible_on_another_process_and_thread_count(scored, synthetic, cache_dir):
    validator, glob, upd, _, path = scored
    rv = validator.open(3, glob)
    here = rv.score(upd)
    there, there_global = score_elsewhere(synthetic.validation, cache_dir, path, threads=1)
    assert abs(there_global - rv.global_loss) < 1e-6
    assert abs(there - here) <= 1e-6  # one unit of the recorded precision (scores are rounded to 1e-6)
