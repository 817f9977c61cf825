"""The benchmark's floor and ceiling: does a success rate measure learning?

Runs the scripted expert (privileged, the ceiling), an untrained SmolVLA of the ``learn`` spec (what training starts
from) and a uniform random policy in closed loop on the same held-out evaluation seeds (sim.eval_seeds), and prints
their success with a 95 % Wilson interval, the mean episode length, wall and cpu seconds and the load. Success is the
tasks' held criterion (sim.tasks: the goal test true for ``hold_steps`` consecutive steps, goals over the whole
workspace); "at goal once" and "held >= k" say what a shorter hold would have scored, read from each episode's
longest hold. Rows accumulate in ``<out>/results.json`` (by task and policy) and the table of all of them goes into
``--doc`` between ``<!-- benchmark -->`` and ``<!-- benchmark:end -->``.

    flock /work/heavy.lock nice -n 10 .venv/bin/python scripts/bench_floor.py --tasks reach --seeds 100
    flock /work/heavy.lock nice -n 10 .venv/bin/python scripts/bench_floor.py --tasks pick_place --seeds 100
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, cpu_seconds, md_row, md_rule, publish, script_parser  # noqa: E402

POLICIES = ("expert", "untrained", "random")
SHORTER_HOLDS = (1, 5, 10)
"""Holds shorter than the tasks' whose scores the table shows beside success (1: at the goal once)."""


def make_policy(name: str, model: str, cache_dir: Path, seed: int) -> tuple:
    """The policy (or controller) and its pre- and postprocessors; only the SmolVLA has processors."""
    from sim import RandomPolicy, ScriptedExpert

    if name == "expert":
        return ScriptedExpert(), None, None
    if name == "random":
        return RandomPolicy(), None, None
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    from node.model import make_smolvla
    from node.so100 import FPS, ROBOT_TYPE, so100_features

    with tempfile.TemporaryDirectory() as tmp:  # the features are all the policy needs of a dataset here
        meta = LeRobotDatasetMetadata.create("zk0/bench_floor", FPS, so100_features(), ROBOT_TYPE, Path(tmp) / "m")
        bundle = make_smolvla(model, meta, cache_dir, seed=seed)
    bundle.policy.eval()
    return bundle.policy, bundle.preprocessor, bundle.postprocessor


def measure(task: str, name: str, seeds: list[int], model: str, cache_dir: Path, workers: int, seed: int) -> dict:
    """One policy on one task: success, its interval, the shorter holds' scores, length and cost."""
    from sim import get_task, rollout

    policy, pre, post = make_policy(name, model, cache_dir, seed)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    result = rollout(policy, pre, post, task=task, seeds=seeds, workers=workers)
    holds = [r.longest_hold for r in result.per_seed]
    return {"task": task, "policy": name if name != "untrained" else f"untrained `{model}`", "seeds": len(seeds),
            "hold_steps": get_task(task).hold_steps, "success": result.success_rate, "interval": result.interval(),
            "held_at_least": {str(k): sum(h >= k for h in holds) / len(holds) for k in SHORTER_HOLDS},
            "mean_length": result.mean_length, "failed_seeds": [r.seed for r in result.per_seed if not r.success],
            "wall_s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - cpu0, "load": os.getloadavg()[0],
            "measured": time.strftime("%Y-%m-%d %H:%M")}


def table(rows: list[dict]) -> str:
    """The stored rows as a Markdown table, tasks in order, the policies as POLICIES lists them."""
    head = ["task", "policy", "seeds", "success (held)", "95 % Wilson", "at goal once",
            *(f"held ≥ {k}" for k in SHORTER_HOLDS[1:]), "mean length", "wall s", "cpu s", "load"]
    lines = [md_row(*head), md_rule(len(head))]
    for r in rows:
        lo, hi = r["interval"]
        shorter = [f"{r['held_at_least'][str(k)]:.0%}" for k in SHORTER_HOLDS]
        lines.append(md_row(r["task"], r["policy"], r["seeds"], f"**{r['success']:.0%}** ({r['hold_steps']} steps)",
                            f"{lo:.1%}-{hi:.1%}", *shorter, f"{r['mean_length']:.0f}", f"{r['wall_s']:.0f}",
                            f"{r['cpu_s']:.0f}", f"{r['load']:.1f}"))
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", default=["reach", "pick_place"], choices=["reach", "pick_place"])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    add_options(parser, seeds=(100, "held-out evaluation seeds per task and policy"),
                model=("learn", "the untrained policy's SmolVLA spec (node/model.py)"),
                workers=(2, "forked evaluation processes"), seed=0, cache_dir=Path(".zk0/fixtures"),
                out=Path("outputs/bench-floor"), doc=Path("docs/fed-vs-central.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)

    import torch

    from sim import eval_seeds

    torch.set_num_threads(1)  # forked evaluation workers: an OpenMP pool does not survive fork (sim.evaluate)
    stored = args.out / "results.json"
    rows = {(r["task"], r["policy"].split()[0]): r for r in json.loads(stored.read_text())} if stored.exists() else {}
    for task in args.tasks:
        for name in args.policies:
            row = measure(task, name, eval_seeds(args.seeds), args.model, args.cache_dir, args.workers, args.seed)
            rows[(task, name)] = row
            print(f"{task} {name}: {row['success']:.0%} ({row['wall_s']:.0f} s, {row['cpu_s']:.0f} cpu s, load "
                  f"{row['load']:.1f})", flush=True)
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(list(rows.values()), indent=1))
    ordered = sorted(rows.values(), key=lambda r: (r["task"] != "reach", POLICIES.index(r["policy"].split()[0])))
    publish(table(ordered), args.doc, "<!-- benchmark -->", "<!-- benchmark:end -->")


if __name__ == "__main__":
    main()
