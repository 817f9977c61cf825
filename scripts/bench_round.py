"""Where a deployment-engine round's time goes: a verified loopback federation (``zk0agg demo --engine deployment``,
synthetic data, the tiny model), then each round's wall time against the work in it.

    flock /work/heavy.lock .venv/bin/python scripts/bench_round.py --out outputs/bench-round-warm
    flock /work/heavy.lock .venv/bin/python scripts/bench_round.py --cold-clientapp --out outputs/bench-round-cold
    .venv/bin/python scripts/bench_round.py --report outputs/bench-round-warm   # the table of a finished run again

A round (the ServerApp's clock, ``metrics.json``) is a train exchange, the gate (signature, proof verification,
validation score, chain record), aggregation, an evaluate exchange and the server's evaluation. Nodes train and
prove in parallel, so the work counted against it is the slowest node's train + prove plus the server's proof
verifications (one after another). Each ClientApp message logs where its own time went (``node.client_app``
``MessageClock``: ``start`` is from its process's start to our handler: Python, imports, Flower fetching the
task and installing the bundle; ``load`` the model build and dataset load).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_CLOCK = re.compile(r"^\S*\s*INFO \S*\s*zk0 (train|evaluate) message, round (\d*): (.*)$")


def message_laps(out: Path) -> list[dict]:
    """Every ``MessageClock`` line of the run's SuperNode logs."""
    laps = []
    for log_path in sorted((out / "deployment").glob("node*/supernode.log")):
        seen = {"train": 0, "evaluate": 0}
        for line in log_path.read_text(errors="replace").splitlines():
            match = _CLOCK.search(line)
            if match:
                kind, parts = match.group(1), dict(p.rsplit(" ", 1) for p in match.group(3).split(", "))
                parts["load"] = parts.pop("node", parts.get("load", "0"))  # the first runs called it "node"
                seen[kind] += 1  # one message of each kind per round: the order names the round where the line lacks it
                laps.append({"kind": kind, "round": int(match.group(2) or seen[kind]), "node": log_path.parent.name,
                             **{k: float(v.rstrip("s")) for k, v in parts.items()}})
    return laps


def report(out: Path) -> dict:
    """Per round: wall time, the work in it, the rest (the overhead); per message kind: mean laps."""
    summary = json.loads((out / "summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    laps = message_laps(out)
    rows = []
    for entry, seconds in zip(summary["rounds"], (m["seconds"] for m in metrics["rounds"]), strict=True):
        r = entry["round"]
        train = [m for m in laps if m["kind"] == "train" and m["round"] == r]
        work = max((m.get("train", 0.0) + m.get("prove", 0.0) for m in train), default=0.0)
        if not train:  # a run from before MessageClock: the nodes' prove times alone (training not reported)
            work = max((n["prove_seconds"] or 0.0 for n in entry["nodes"]), default=0.0)
        verify = sum(n["verify_seconds"] or 0.0 for n in entry["nodes"])
        rows.append({"round": r, "round_s": seconds["round"], "train_prove_slowest_s": work, "verify_s": verify,
                     "overhead_s": seconds["round"] - work - verify,
                     "statuses": [n["status"] for n in entry["nodes"]]})
    kinds = {}
    for kind in ("train", "evaluate"):
        msgs = [m for m in laps if m["kind"] == kind]
        keys = sorted({k for m in msgs for k in m if k not in ("kind", "round", "node")})
        kinds[kind] = {k: round(sum(m.get(k, 0.0) for m in msgs) / max(1, len(msgs)), 2) for k in keys}
        kinds[kind]["messages"] = len(msgs)
    return {"rounds": rows, "messages": kinds}


def print_report(result: dict) -> None:
    print(f"{'round':>5} {'round s':>8} {'train+prove (slowest) s':>24} {'verify s':>9} {'overhead s':>11}  statuses")
    for row in result["rounds"]:
        print(f"{row['round']:>5} {row['round_s']:>8.1f} {row['train_prove_slowest_s']:>24.1f} {row['verify_s']:>9.1f} "
              f"{row['overhead_s']:>11.1f}  {','.join(row['statuses'])}")
    for kind, laps in result["messages"].items():
        count = laps.pop("messages")
        print(f"{kind} messages (mean of {count}): " + ", ".join(f"{k} {v:.2f}s" for k, v in laps.items()))
    for key in ("wall_s", "cpu_s", "load_before", "load_after"):
        if key in result:
            print(f"{key}: {result[key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=time.strftime("outputs/bench-round-%Y%m%d-%H%M%S"))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold-clientapp", action="store_true", help="no warm ClientApp host (Flower's own way)")
    parser.add_argument("--cache-dir", default=".zk0/fixtures", help="fixtures and circuit cache")
    parser.add_argument("--report", metavar="OUT", help="only print the table of a finished run in OUT")
    args = parser.parse_args()
    if args.report:
        out = Path(args.report)
        result = json.loads((out / "bench-round.json").read_text()) if (out / "bench-round.json").exists() \
            else report(out)
        print_report(result)
        return

    import os

    from aggregator.tools.demo import DemoConfig, run_demo

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    run_demo(DemoConfig(nodes=args.nodes, rounds=args.rounds, out=args.out, data="synthetic", engine="deployment",
                        eval_episodes=0, warm_clientapp=not args.cold_clientapp, cache_dir=args.cache_dir))
    wall = time.perf_counter() - t0
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    out = Path(args.out).resolve()
    result = {**report(out), "wall_s": round(wall, 1),
              "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in usage), 1),
              "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
              "warm_clientapp": not args.cold_clientapp}
    (out / "bench-round.json").write_text(json.dumps(result, indent=2))
    print_report(result)


if __name__ == "__main__":
    main()
