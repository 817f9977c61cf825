"""Record scripted-expert demonstrations from the simulator into a LeRobot v3 dataset.

    # one dataset, default variation, node seeds from 0
    MUJOCO_GL=egl .venv/bin/python scripts/sim_record.py --root data/sim_pick --episodes 50
    # node 1 of 4 non-IID nodes (its own regions, camera, light and seed block)
    MUJOCO_GL=egl .venv/bin/python scripts/sim_record.py --root data/node1 --episodes 20 --node 1 --nodes 4
    # the server's held-out dataset
    MUJOCO_GL=egl .venv/bin/python scripts/sim_record.py --root data/heldout --episodes 10 --heldout

Use the folder as a node dataset with ``--dataset local:<root>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")

from sim import TASKS, ExpertConfig, Variation, heldout_spec, node_variations, record_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="dataset folder to create")
    parser.add_argument("--repo-id", default=None, help="LeRobot repo id (default: zk0/sim_<folder name>)")
    parser.add_argument("--task", default="pick_place", choices=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="first episode seed (default: from the spec)")
    parser.add_argument("--node", type=int, default=None, help="record node K's variation (with --nodes)")
    parser.add_argument("--nodes", type=int, default=None, help="number of nodes for --node")
    parser.add_argument("--heldout", action="store_true", help="record the server's held-out dataset")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--speed", type=float, default=1.0, help="expert speed factor (2 = twice as fast)")
    parser.add_argument("--workers", type=int, default=1, help="recording processes (each records a slice of seeds)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)

    split, variation, seed, task = "node", Variation(), 0, args.task
    if args.heldout:
        spec = heldout_spec(args.task)
        split, variation, seed = "heldout", spec.variation, spec.seed
    elif args.node is not None:
        if args.nodes is None or not 0 <= args.node < args.nodes:
            parser.error("--node K needs --nodes N with 0 <= K < N")
        spec = node_variations(args.nodes, tasks=(args.task,))[args.node]
        variation, seed = spec.variation, spec.seed
    seed = args.seed if args.seed is not None else seed
    repo_id = args.repo_id or f"zk0/sim_{args.root.name}"

    start = time.perf_counter()
    root = record_dataset(args.root, repo_id, task, episodes=args.episodes, seed=seed, variation=variation,
                          max_steps=args.max_steps, split=split, expert=ExpertConfig(speed=args.speed),
                          overwrite=args.overwrite, workers=args.workers)
    print(f"{args.episodes} episodes of {task} in {time.perf_counter() - start:.1f} s -> local:{root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
