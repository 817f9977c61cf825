"""Honest federations, measured: the validation scores and proven losses honest nodes produce, how often each
reject reason would hit them, and what verification costs the final model.

For each data kind (synthetic, sim) and seed, runs the verified demo (anvil, EZKL proofs, signatures, the gate with
the validation score, Multi-Krum, chain records) of honest nodes only, and the same federation unverified
(``--no-verify``: no proofs, no signatures; the validation score still runs, so the two differ by the proofs alone).
From every honest reply it collects the validation score s = L_val(θ_g) − L_val(θ_n) and the proven losses, and
reports: the score's distribution (absolute and relative to L_val(θ_g)), the replies the old NO_IMPROVEMENT rule
(loss_after ≥ loss_before) would have rejected, the replies each reason rejected, and the final eval loss verified
vs unverified. Rows accumulate in ``<out>/results.json``; the table goes to ``--doc`` between markers.

    .venv/bin/python scripts/eval_validation.py [--data synthetic sim] [--seeds 0 1 2] [--nodes 3] [--rounds 3]
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from scripts import evalkit  # noqa: E402

START, END = "<!-- validation-table:start -->", "<!-- validation-table:end -->"


def run(data: str, seed: int, verify: bool, args, out: Path) -> dict:
    """One honest federation; returns its measured row."""
    import psutil
    from rich.console import Console

    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    if out.exists():  # a fresh chain, wallets and journal: an earlier attempt's must not be resumed or mixed in
        import shutil

        shutil.rmtree(out)
    fed = FederationConfig(local_steps=args.local_steps, seed=seed, krum_f=0, krum_m=2)
    demo = DemoConfig(nodes=args.nodes, rounds=args.rounds, out=str(out), cache_dir=args.cache_dir, data=data,
                      episodes=args.episodes, eval_episodes=0, verify=verify)
    cpu0, t0 = psutil.Process().cpu_times(), time.perf_counter()
    summary = run_demo(demo, fed, console=Console(quiet=True))
    cpu1 = psutil.Process().cpu_times()
    cpu = sum(cpu1[:4]) - sum(cpu0[:4])  # this process and its waited-for children (Ray workers are not counted)
    replies = [{"round": r["round"], "validation_loss": r.get("validation_loss"),
                **{k: n.get(k) for k in ("status", "reason", "score", "loss_before", "loss_after")}}
               for r in summary["rounds"] for n in r["nodes"]]
    return {"data": data, "seed": seed, "verify": verify, "nodes": args.nodes, "rounds": args.rounds,
            "local_steps": args.local_steps, "final_eval_loss": summary["final_eval_loss"],
            "initial_eval_loss": summary["initial_eval_loss"], "wall_s": time.perf_counter() - t0, "cpu_s": cpu,
            "load": os.getloadavg()[0], "min_gain": fed.min_gain, "harm_tolerance": fed.harm_tolerance,
            "rise_tolerance": fed.rise_tolerance, "kept_global": sum(r["kept_global"] for r in summary["rounds"]),
            "replies": replies}


def table(rows: list[dict]) -> str:
    """One line per (data, seed): the verified run's honest replies, and its final loss next to the unverified."""
    import numpy as np

    lines = [
        "| data | seed | nodes × rounds | honest replies | score min / p5 / median | relative score min / median | "
        "proven loss rose (old NO_IMPROVEMENT) | rejected | not averaged (score ≤ min gain) | "
        "final eval loss verified | unverified | difference | verified run s (cpu s, load) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["data"], r["seed"], r["verify"]): r for r in rows}
    for (data, seed, verify), r in sorted(by_key.items()):
        if not verify:
            continue
        plain = by_key.get((data, seed, False))
        replies = r["replies"]
        scored = [x for x in replies if x["score"] is not None]
        scores = np.array([x["score"] for x in scored])
        rel = np.array([x["score"] / x["validation_loss"] for x in scored])
        rises = [x["loss_after"] / x["loss_before"] - 1 for x in replies
                 if x["loss_before"] is not None and x["loss_after"] >= x["loss_before"]]
        final_plain = f"{plain['final_eval_loss']:.4f}" if plain else "-"
        diff = f"{r['final_eval_loss'] / plain['final_eval_loss'] - 1:+.1%}" if plain else "-"
        lines.append(evalkit.md_row(
            data, seed, f"{r['nodes']} × {r['rounds']}", len(replies),
            f"{scores.min():+.4f} / {np.percentile(scores, 5):+.4f} / {np.median(scores):+.4f}",
            f"{rel.min():+.1%} / {np.median(rel):+.1%}", f"{len(rises)} (max +{max(rises, default=0):.1%})",
            ", ".join(f"{k} × {v}" for k, v in evalkit.rejected(replies).items()) or "none",
            evalkit.not_averaged(scored, r["min_gain"]), f"{r['final_eval_loss']:.4f}", final_plain, diff,
            evalkit.run_cost(r)))
    return "\n".join(lines)


def row_key(row: dict) -> tuple:
    """What makes two rows the same run: data, seed, verified or not, and the federation's size and budget."""
    return row["data"], row["seed"], row["verify"], row["nodes"], row["rounds"], row["local_steps"]


def main() -> None:
    parser = evalkit.script_parser(__doc__)
    parser.add_argument("--data", nargs="+", default=["synthetic", "sim"], choices=["synthetic", "sim"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    evalkit.add_options(parser, nodes=3, rounds=3, local_steps=20, episodes=4, cache_dir=".zk0/fixtures",
                        out=Path("outputs/eval-validation"), doc=Path("docs/benchmarks.md"),
                        only_table=(False, "rewrite the table from results.json"),
                        force=(False, "run again the selected runs stored in results.json (their rows are "
                               "replaced), e.g. after a change to the gate or the strategy"))
    args = parser.parse_args()
    results_path = args.out / "results.json"
    rows = evalkit.load_rows(results_path)
    if not args.only_table:
        for data in args.data:
            for seed in args.seeds:
                for verify in (True, False):
                    key = (data, seed, verify, args.nodes, args.rounds, args.local_steps)
                    if any(row_key(r) == key for r in rows) and not args.force:
                        continue
                    rows = [r for r in rows if row_key(r) != key]  # --force: the new row replaces the stored one
                    name = f"{data}-s{seed}-{'verified' if verify else 'unverified'}"
                    evalkit.run_and_store(rows, results_path, "eval_validation", name,
                                          partial(run, data, seed, verify, args, args.out / name))
    evalkit.publish(table(rows), args.doc, START, END)


if __name__ == "__main__":
    main()
