"""Benchmark the validation gate: what scoring one reply costs, next to what verifying its proof costs.

For the tiny SmolVLA and the full-size architecture (random weights), on the synthetic validation set: the round's
opening (decode and preprocess k batches, compute their frozen VLM prefix, score the global model) and one reply's
score (k passes of the state token and the action expert), wall and cpu seconds, for k = 1, 2, 4 batches of 8
frames; beside it one reply scored with the prefix recomputed (k whole forward passes, the scoring before the
prefix was cached), in the same process. Next to it: one EZKL verification of a tiny-slice proof (what the gate
already spends per reply). Prints a markdown table and writes it to ``--doc`` between markers.

    .venv/bin/python scripts/bench_validation.py [--models tiny full-random] [--k 1 2 4] [--replies 3]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, cpu_seconds, md_row, md_rule, publish, script_parser  # noqa: E402

START, END = "<!-- validation-cost:start -->", "<!-- validation-cost:end -->"


def timed(fn):
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def bench_model(model: str, validation: str, cache_dir: Path, ks: list[int], replies: int,
                threads: int) -> list[dict]:
    import numpy as np
    from lerobot.datasets.factory import resolve_delta_timestamps

    from aggregator.protocol.validation import ValidationConfig, Validator
    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.params import get_trainable

    meta = load_metadata(validation)
    bundle = make_smolvla(model, meta, cache_dir, seed=0)
    data = load_dataset(validation, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    glob = get_trainable(bundle.policy)
    rng = np.random.default_rng(0)
    updates = [{k: v + rng.normal(0, 1e-3, v.shape).astype(np.float32) for k, v in glob.items()}
               for _ in range(replies)]
    rows = []
    for k in ks:
        validator = Validator(bundle, data, ValidationConfig(batches=k, batch_size=8, threads=threads), seed=0)
        rv, open_s, open_cpu = timed(lambda: validator.open(1, glob))  # noqa: B023
        per = [timed(lambda u=u: rv.score(u))[1:] for u in updates]  # noqa: B023
        _, full_s, full_cpu = timed(lambda: validator.loss(updates[0], rv.batches, rv.seed))  # noqa: B023
        rows.append({"model": model, "threads": threads, "k": k, "frames": k * 8, "open s": open_s,
                     "open cpu s": open_cpu, "score s": sum(p[0] for p in per) / len(per),
                     "score cpu s": sum(p[1] for p in per) / len(per), "full s": full_s, "full cpu s": full_cpu,
                     "cached": rv.prefixes is not None, "trainable": sum(v.size for v in glob.values())})
        print(f"{model} k={k}: open {open_s:.2f} s, score {rows[-1]['score s']:.3f} s per reply "
              f"({full_s:.3f} s with the prefix recomputed)", file=sys.stderr, flush=True)
    return rows


def bench_verify() -> dict:
    from scripts.bench_prover import run_case

    row = run_case("6,48,16", None, None, None)
    return {"verify s": row["verify s"], "verify cpu s": row["verify cpu s"]}


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["tiny", "full-random"])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--full-k", nargs="+", type=int, default=[1], help="k for full-random (slow on a CPU)")
    add_options(parser, replies=3, threads=(1, "torch threads while scoring the tiny model"),
                full_threads=(2, "torch threads for full-random"), cache_dir=Path(".zk0/fixtures"),
                doc=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    from aggregator.tools.fixtures import synthetic_fixtures

    fixtures = synthetic_fixtures(args.cache_dir, 1, episodes=4, frames=30)
    verify = bench_verify()
    rows = []
    for model in args.models:
        ks = args.full_k if model != "tiny" else args.k
        rows += bench_model(model, fixtures.validation, args.cache_dir, ks, args.replies if model == "tiny" else 1,
                            args.threads if model == "tiny" else args.full_threads)
    load = os.getloadavg()[0]
    lines = [f"Measured by `scripts/bench_validation.py` on {time.strftime('%Y-%m-%d')}, 2 cores (load {load:.1f}); "
             "one EZKL verification of a tiny-slice proof "
             f"(A=6, H=48, m=16), for comparison: {verify['verify s']:.3f} s wall, {verify['verify cpu s']:.3f} cpu s.",
             "", md_row("model", "torch threads", "trainable params", "k batches (frames)", "round opening s (cpu s)",
                        "per reply s (cpu s)", "per reply, prefix recomputed s (cpu s)", "cheaper (cpu)",
                        "per reply vs one tiny proof verification (cpu)"), md_rule(9)]
    for r in rows:
        lines.append(md_row(r["model"], r["threads"], f"{r['trainable']:,}", f"{r['k']} ({r['frames']})",
                            f"{r['open s']:.2f} ({r['open cpu s']:.2f})",
                            f"{r['score s']:.3f} ({r['score cpu s']:.3f})" + ("" if r["cached"] else " uncached"),
                            f"{r['full s']:.3f} ({r['full cpu s']:.3f})",
                            f"{r['full cpu s'] / r['score cpu s']:.1f}×",
                            f"{r['score cpu s'] / verify['verify cpu s']:.1f}×"))
    publish("\n".join(lines), args.doc, START, END)


if __name__ == "__main__":
    main()
