"""Measure the scripted expert and the trivial baselines in closed loop on held-out evaluation seeds.

    MUJOCO_GL=egl .venv/bin/python scripts/sim_expert.py --task pick_place --seeds 100

Prints each controller's success rate, mean episode length and seconds per episode. The expert must reach
90 % on pick_place (the script exits 1 otherwise); random and constant policies should score ~0 %.
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

from sim import ConstantPolicy, RandomPolicy, ScriptedExpert, eval_seeds, rollout  # noqa: E402

REQUIRED = {"pick_place": 0.9, "reach": 0.9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pick_place", choices=sorted(REQUIRED))
    parser.add_argument("--seeds", type=int, default=100, help="number of held-out evaluation seeds")
    parser.add_argument("--video-dir", type=Path, default=None, help="write a few expert rollouts as mp4")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    seeds = eval_seeds(args.seeds)
    print(f"{args.task}: {len(seeds)} held-out seeds {seeds[0]}..{seeds[-1]}")
    print(f"{'controller':<10} {'success':>8} {'mean len':>9} {'s/episode':>10}")
    rates = {}
    for name, controller in (("expert", ScriptedExpert()), ("random", RandomPolicy()),
                             ("constant", ConstantPolicy())):
        start = time.perf_counter()
        result = rollout(controller, task=args.task, seeds=seeds, progress=True,
                         video_dir=args.video_dir / name if args.video_dir and name == "expert" else None)
        seconds = (time.perf_counter() - start) / len(seeds)
        rates[name] = result.success_rate
        print(f"{name:<10} {100 * result.success_rate:7.1f}% {result.mean_length:9.1f} {seconds:10.3f}")
        failed = [r.seed for r in result.per_seed if not r.success]
        if name == "expert" and failed:
            print(f"           expert failed on seeds {failed}")
    if rates["expert"] < REQUIRED[args.task]:
        print(f"FAIL: expert below {100 * REQUIRED[args.task]:.0f}%")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
