"""Recording and evaluation speed: scripted-expert episodes with two cameras into a LeRobot video dataset, and
closed-loop episodes of a SmolVLA policy in the simulator, episodes per minute.

Each case runs in a fresh process (imports included in neither figure: they are paid once per recording).
Prints episodes/min, wall and cpu seconds (this process and its workers) and the load average before and after,
since other work on the machine changes wall times 2-3x.

    .venv/bin/python scripts/bench_record.py [--task pick_place] [--episodes 10] [--workers 1 2]
    .venv/bin/python scripts/bench_record.py --evaluate learn [--task reach] [--episodes 10]

``--evaluate SPEC`` times closed-loop evaluation instead: a freshly built policy of that model spec (its speed does
not depend on its weights; an untrained one runs every episode to the task's step limit, the slowest case) on
evaluation seeds, rendering only the observations the policy looks at, as the server's evaluation does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")

from scripts.evalkit import cpu_seconds  # noqa: E402


def run_case(task: str, episodes: int, workers: int, out: str) -> dict:
    """Child process: import, then time one recording of ``episodes`` episodes."""
    import logging

    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sim import record_dataset

    load0, cpu0, t0 = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
    out = Path(out)
    record_dataset(out, "zk0/bench_record", task, episodes=episodes, seed=0, overwrite=True, progress=False,
                   workers=workers)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    frames = LeRobotDataset("zk0/bench_record", root=out, video_backend="pyav").num_frames
    return {"task": task, "episodes": episodes, "workers": workers, "frames": frames, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "episodes_per_min": round(60 * episodes / wall, 1),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}


def evaluate_case(spec: str, task: str, episodes: int, out: str, workers: int = 1) -> dict:
    """Child process: build the policy (on one recorded episode's metadata), then time ``episodes`` rollouts in
    ``workers`` processes."""
    import logging
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    from node.datasets import load_metadata
    from node.model import make_smolvla
    from sim import eval_seeds, record_dataset, rollout

    out = Path(out)
    torch.set_num_threads(1)  # as the server's evaluation and the nodes
    # Recorded in a child: a process that has rendered cannot fork evaluation workers (sim.evaluate).
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
        pool.submit(record_dataset, out, "zk0/bench_eval", task, episodes=1, seed=0, overwrite=True,
                    progress=False).result()
    bundle = make_smolvla(spec, load_metadata(f"local:{out}"), Path(".zk0/fixtures"))
    load0, cpu0, t0 = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
    result = rollout(bundle.policy, bundle.preprocessor, bundle.postprocessor, task=task, seeds=eval_seeds(episodes),
                     workers=workers)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {"task": task, "episodes": episodes, "workers": f"eval `{spec}`, {workers}",
            "frames": sum(r.length for r in result.per_seed), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "episodes_per_min": round(60 * episodes / wall, 1), "load_before": round(load0, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--evaluate", metavar="SPEC", help="time closed-loop evaluation of this model spec instead")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child process: one timed case, its figures as JSON on the last line
        case = json.loads(args.case)
        kind = case.pop("kind")
        print(json.dumps(evaluate_case(**case) if kind == "evaluate" else run_case(**case)))
        return
    print("| task | workers | episodes | frames | wall s | cpu s | episodes/min | load before → after |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cases = ([{"kind": "evaluate", "spec": args.evaluate, "task": args.task, "episodes": args.episodes,
                   "workers": w} for w in args.workers] if args.evaluate else
                 [{"kind": "record", "task": args.task, "episodes": args.episodes, "workers": w} for w in args.workers])
        for i, case in enumerate(cases):
            case["out"] = str(Path(tmp) / f"ds{i}")
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                sys.exit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"| {r['task']} | {r['workers']} | {r['episodes']} | {r['frames']} | {r['wall_s']} | {r['cpu_s']} | "
                  f"{r['episodes_per_min']} | {r['load_before']} → {r['load_after']} |", flush=True)


if __name__ == "__main__":
    main()
