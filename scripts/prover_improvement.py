"""Do honest updates pass the improvement check when X comes from the *global* trunk? (DESIGN.md §4)

A node trains the whole trainable set (FedProx), so its W_n was fitted to its own trunk's features X_n; had the
statement evaluated W_n on the global trunk's X_g (its first design), would honest nodes pass? For a few rounds
of a small federation (tiny SmolVLA, synthetic non-IID nodes, the federation's default training config) this
captures, per node and per capture seed, the slice with X_g and X_n (same positions, noise, time and targets)
and reports how often

    global trunk:  loss(W_n, X_g) < loss(W_g, X_g)      (the first design: one X)
    node trunk:    loss(W_n, X_n) < loss(W_g, X_g)      (what the circuit proves: X_n committed too)

holds, and by how much. Prints a table; --json writes the rows.

    .venv/bin/python scripts/prover_improvement.py --rounds 3 --nodes 3 --seeds 8
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, md_row, md_rule, script_parser, write_json  # noqa: E402


def main() -> None:
    parser = script_parser(__doc__)
    add_options(parser, rounds=3, nodes=3, seeds=(8, "captures per node and round"), rows=16,
                steps=(20, "local steps (the federation's default)"), lr=1e-3, mu=0.01,
                cache_dir=str(ROOT / ".zk0" / "fixtures"), json=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from lerobot.datasets.factory import resolve_delta_timestamps

    from aggregator.tools.fixtures import synthetic_fixtures
    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.params import get_trainable
    from node.train import TrainConfig, fedprox_train
    from prover.capture import capture_slice
    from prover.statement import slice_loss

    torch.set_num_threads(2)
    fixtures = synthetic_fixtures(Path(args.cache_dir), n_nodes=args.nodes)
    meta = load_metadata(fixtures.nodes[0])
    bundle = make_smolvla("tiny", meta, Path(args.cache_dir))
    policy = bundle.policy
    delta = resolve_delta_timestamps(bundle.config, meta)
    datasets = [load_dataset(uri, delta_timestamps=delta) for uri in fixtures.nodes]
    global_arrays = get_trainable(policy)
    rows = []
    for rnd in range(1, args.rounds + 1):
        node_arrays = []
        for i, dataset in enumerate(datasets):
            cfg = TrainConfig(steps=args.steps, batch_size=8, learning_rate=args.lr, proximal_mu=args.mu,
                              seed=100 * rnd + i, progress=False)  # fmt: skip
            fedprox_train(bundle, dataset, global_arrays, cfg)
            mine = get_trainable(policy)
            node_arrays.append(mine)
            g_state = {k: torch.from_numpy(v) for k, v in global_arrays.items()}
            n_state = {k: torch.from_numpy(v) for k, v in mine.items()}
            for seed in range(args.seeds):
                gen = torch.Generator().manual_seed(1000 * rnd + 10 * i + seed)
                loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True, generator=gen)
                batch = bundle.preprocessor(next(iter(loader)))
                s = capture_slice(policy, g_state, n_state, batch, rows=args.rows, action_dim=6, seed=seed)
                before, after_node = s.losses()  # the statement: X_g for loss_before, X_n for loss_after
                after_global = slice_loss(s.W_n, s.b_n, s.X_g, s.Y)  # the alternative: X_g for both
                rows.append({"round": rnd, "node": i, "seed": seed, "loss_before": before,
                             "after_global_trunk": after_global, "after_node_trunk": after_node})  # fmt: skip
        global_arrays = {k: np.mean([a[k] for a in node_arrays], axis=0) for k in global_arrays}  # FedAvg

    print(md_row("round", "captures", "pass, X from global trunk", "pass, X from node trunk",
                 "median rel. drop (global)", "median rel. drop (node)"))
    print(md_rule(6))
    for rnd in range(1, args.rounds + 1):
        sel = [r for r in rows if r["round"] == rnd]
        drop_g = [(r["loss_before"] - r["after_global_trunk"]) / r["loss_before"] for r in sel]
        drop_n = [(r["loss_before"] - r["after_node_trunk"]) / r["loss_before"] for r in sel]
        passed = [f"{sum(d > 0 for d in drop)}/{len(sel)}" for drop in (drop_g, drop_n)]
        print(md_row(rnd, len(sel), *passed, f"{np.median(drop_g):+.2%}", f"{np.median(drop_n):+.2%}"))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
