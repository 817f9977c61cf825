"""Client-side DP, measured: what each privacy budget costs the model, the gate's honest false rejections, and whether
Krum (with the gate in front of it) still keeps a sign-flipper out.

For each ε (``inf``: no DP; ``clip``: clipping to C without noise; a number: σ calibrated for that ε over the run's
rounds at δ = 1e-5) and each federation kind (``honest``: N honest nodes, Krum f = 0; ``sign-flip``: N honest nodes
and one sign-flipper, Krum f = 1; ``sign-flip-krum-only``: the same without a validation set, so Krum alone decides),
runs the verified demo on synthetic data (anvil, EZKL proofs over the noised updates, signatures, the gate with the
validation score, Multi-Krum, chain records) with the same seed, and reports the final eval loss, every honest
reply's rejection reason, the replies the validation score kept out of the average, the proven-loss rises, and the
sign-flipper's outcome per round. Rows accumulate in ``<out>/results.json``;
the table goes to ``--doc`` between markers. Run one federation per command to keep each under the heavy lock:

    flock /work/heavy.lock .venv/bin/python scripts/eval_privacy.py --epsilons 8 --kinds honest
    .venv/bin/python scripts/eval_privacy.py --only-table
"""

from __future__ import annotations

import math
import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from scripts import evalkit  # noqa: E402

START, END = "<!-- privacy-table:start -->", "<!-- privacy-table:end -->"
KINDS = ("honest", "sign-flip", "sign-flip-krum-only")  # krum-only: no validation set, Krum alone decides
ORDER = {"inf": 0, "clip": 1}  # then the numbers, largest ε first


def dp_settings(epsilon: str, clip: float) -> dict:
    """FederationConfig's dp_* fields for one row."""
    if epsilon == "inf":
        return {}
    if epsilon == "clip":
        return {"dp_clip": clip}
    return {"dp_epsilon": float(epsilon), "dp_clip": clip}


class TreeCpu:
    """cpu seconds of this process and every descendant (Ray's workers train and prove the nodes), polled every
    second in a thread: a worker's last-seen time counts after it exits."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._me, self._seen, self._stop = psutil.Process(), {}, threading.Event()
        self._base = self._sample()[self._me.pid]
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        import psutil

        out = {}
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._seen.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._seen.update(self._sample())
        return sum(self._seen.values()) - self._base


def run(epsilon: str, kind: str, args, out: Path) -> dict:
    """One verified federation; returns its measured row."""
    from rich.console import Console

    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo
    from contracts import read_address

    adversarial = kind.startswith("sign-flip")
    nodes = args.nodes + adversarial
    fed = FederationConfig(local_steps=args.local_steps, seed=args.seed, krum_f=int(adversarial), krum_m=2,
                           **dp_settings(epsilon, args.clip))
    demo = DemoConfig(nodes=nodes, rounds=args.rounds, out=str(out), cache_dir=args.cache_dir, data="synthetic",
                      episodes=args.episodes, eval_episodes=0, adversary="sign-flip" if adversarial else None,
                      validation=kind != "sign-flip-krum-only")
    t0, load0, cpu = time.perf_counter(), os.getloadavg()[0], TreeCpu()
    summary = run_demo(demo, fed, console=Console(quiet=True))
    cpu = cpu.stop()
    flipper = read_address(out / "wallets" / f"node{nodes - 1}.json") if adversarial else None
    replies = [{"round": r["round"], "validation_loss": r.get("validation_loss"), "kept_global": r["kept_global"],
                "adversary": n.get("claimed_address") == flipper,
                **{k: n.get(k) for k in ("status", "reason", "score", "loss_before", "loss_after", "dp_epsilon")}}
               for r in summary["rounds"] for n in r["nodes"]]
    dp = summary.get("dp") or {}
    return {"epsilon": epsilon, "kind": kind, "seed": args.seed, "nodes": nodes, "rounds": args.rounds,
            "local_steps": args.local_steps, "clip": dp.get("clip"), "noise_multiplier": dp.get("noise_multiplier"),
            "epsilon_per_round": dp.get("epsilon_per_round", {}), "final_eval_loss": summary["final_eval_loss"],
            "initial_eval_loss": summary["initial_eval_loss"], "wall_s": time.perf_counter() - t0, "cpu_s": cpu,
            "load": (load0 + os.getloadavg()[0]) / 2, "min_gain": fed.min_gain,
            "kept_global": sum(r["kept_global"] for r in summary["rounds"]), "replies": replies}


def _label(epsilon: str) -> str:
    return {"inf": "∞ (no DP)", "clip": "∞ (clipping only)"}.get(epsilon, epsilon)


def _sort_key(row: dict) -> tuple:
    eps = row["epsilon"]
    return (ORDER.get(eps, 2), -float(eps) if eps not in ORDER else 0.0, KINDS.index(row["kind"]), row["seed"])


def table(rows: list[dict]) -> str:
    """One line per (ε, kind, seed)."""
    import numpy as np

    lines = [
        "| ε (δ = 1e-5) | federation | C / σ | ε after rounds 1, 2, 3 | initial → final eval loss | honest replies | "
        "honest rejected | honest not averaged (score ≤ min gain) | honest scores min / median | "
        "proven loss rose (max) | rounds global kept | sign-flipper per round | run s (cpu s, load) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=_sort_key):
        honest = [x for x in r["replies"] if not x["adversary"]]
        scored = [x for x in honest if x["score"] is not None]
        scores = np.array([x["score"] for x in scored])
        spread = f"{scores.min():+.4f} / {np.median(scores):+.4f}" if scored else "- (no validation set)"
        rises = [x["loss_after"] / x["loss_before"] - 1 for x in honest
                 if x["loss_before"] is not None and x["loss_after"] > x["loss_before"]]
        flips = [x["status"] for x in r["replies"] if x["adversary"]]
        eps_rounds = ", ".join(f"{r['epsilon_per_round'][k]:.2f}" for k in sorted(r["epsilon_per_round"], key=int)
                               if r["epsilon_per_round"][k] is not None) or "-"
        dp = f"{r['clip']:g} / {r['noise_multiplier']:.3f}" if r["clip"] is not None else "-"
        lines.append(evalkit.md_row(
            _label(r["epsilon"]), f"{r['kind']}: {r['nodes']} × {r['rounds']}", dp, eps_rounds,
            f"{r['initial_eval_loss']:.4f} → {r['final_eval_loss']:.4f}", len(honest),
            ", ".join(f"{k} × {v}" for k, v in sorted(evalkit.rejected(honest).items())) or "none",
            evalkit.not_averaged(scored, r["min_gain"]), spread,
            f"{len(rises)} ({'+' + format(max(rises), '.0%') if rises else '-'})", r["kept_global"],
            ", ".join(flips) or "-", evalkit.run_cost(r)))
    return "\n".join(lines)


def main() -> None:
    parser = evalkit.script_parser(__doc__)
    parser.add_argument("--epsilons", nargs="+", default=["inf", "8", "3", "1"],
                        help="privacy budgets: inf (no DP), clip (clipping only), or numbers")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS[:2]), choices=KINDS)
    evalkit.add_options(parser, clip=(0.01, "C (default: node.dp.DEFAULT_CLIP)"), seed=0,
                        nodes=(4, "honest nodes (sign-flip adds one)"), rounds=3, local_steps=20, episodes=4,
                        cache_dir=".zk0/fixtures", out=Path("outputs/eval-privacy"), doc=Path("docs/privacy.md"),
                        only_table=(False, "rewrite the table from results.json"))
    args = parser.parse_args()
    for eps in args.epsilons:
        if eps not in ORDER and not (math.isfinite(float(eps)) and float(eps) > 0):
            parser.error(f"--epsilons: {eps!r} is not inf, clip or a positive number")
    results_path = args.out / "results.json"
    rows = evalkit.load_rows(results_path)
    if not args.only_table:
        for eps in args.epsilons:
            for kind in args.kinds:
                key = (eps, kind, args.seed, args.rounds, args.local_steps)
                if any((r["epsilon"], r["kind"], r["seed"], r["rounds"], r["local_steps"]) == key for r in rows):
                    continue
                name = f"eps-{eps}-{kind}-s{args.seed}"
                evalkit.run_and_store(rows, results_path, "eval_privacy", name,
                                      partial(run, eps, kind, args, args.out / name))
    evalkit.publish(table(rows), args.doc, START, END, title="# Differential privacy\n\n")


if __name__ == "__main__":
    main()
