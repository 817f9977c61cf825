"""Rollout videos of saved policies: for each model, the first success and the first failure on held-out evaluation
seeds, copied to ``--out`` as ``<label>-success-seed_<s>.mp4`` and ``<label>-failure-seed_<s>.mp4`` (front and wrist
cameras side by side, the closed loop fed_vs_central.py and the server run).

Each argument is ``label=folder``, a folder holding a saved policy's ``model.safetensors`` (a federated run's
``checkpoints/round_<r>``, a centralized run's ``checkpoint``). A model with no success (or no failure) in
``--seeds`` episodes gets only the video it has, and the script says so.

    .venv/bin/python scripts/rollout_videos.py --episodes 25 --out docs/media \\
        federated=outputs/fed-vs-central/federated/checkpoints/round_24
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, add_saved_models, saved_models, script_parser  # noqa: E402


def main() -> None:
    parser = script_parser(__doc__)
    add_saved_models(parser)
    add_options(parser, seeds=(40, "held-out evaluation seeds to look through"),
                workers=(2, "forked evaluation processes"), out="docs/media")
    args = parser.parse_args()
    named = saved_models(args)

    import torch

    from aggregator.tools.fixtures import sim_fixtures
    from node.datasets import load_metadata
    from node.model import make_smolvla
    from node.params import set_trainable, trainable_names
    from scripts.fed_vs_central import checkpoint_arrays
    from sim import eval_seeds, rollout

    torch.set_num_threads(1)  # forked evaluation workers need a one-thread parent (sim.evaluate)
    fixtures = sim_fixtures(Path(args.cache_dir), args.nodes, args.episodes, tasks=(args.task,))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(args.seeds)
    for label, folder in named:
        bundle = make_smolvla(args.model, load_metadata(fixtures.heldout), Path(args.cache_dir))
        arrays = checkpoint_arrays(folder)
        set_trainable(bundle.policy, {name: arrays[name] for name in trainable_names(bundle.policy)})
        bundle.policy.eval()
        with tempfile.TemporaryDirectory() as tmp:
            result = rollout(bundle.policy, bundle.preprocessor, bundle.postprocessor, task=args.task, seeds=seeds,
                             video_dir=tmp, max_videos=len(seeds), workers=args.workers)
            print(f"{label}: success {result.success_rate:.0%} over {len(seeds)} seeds", flush=True)
            for kind, wanted in (("success", True), ("failure", False)):
                episode = next((r for r in result.per_seed if r.success is wanted), None)
                if episode is None:
                    print(f"  no {kind} in {len(seeds)} seeds: no {kind} video", flush=True)
                    continue
                target = out / f"{label}-{kind}-seed_{episode.seed}.mp4"
                shutil.copyfile(episode.video, target)
                print(f"  {kind}: {target} ({episode.length} steps, longest hold {episode.longest_hold})",
                      flush=True)


if __name__ == "__main__":
    main()
