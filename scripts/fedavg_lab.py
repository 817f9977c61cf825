"""FedAvg(M) on the nodes' data without the verified system: what local training and averaging can learn at a
budget, with the nodes' non-IID strips or with the same frames dealt out at random (IID).

The verified federation (scripts/fed_vs_central.py) adds proofs, the gate and selection by usefulness to the same
learning; this lab leaves them out, so its rows separate what the federation's learning costs (local steps,
averaging, non-IID data) from what the system costs (docs/fed-vs-central.md, "Levers"). Each round every node trains
``--local-steps`` from the global model with the nodes' own code (``node.train.fedprox_train``, the round's seed as
a node's), the new global model is the equal mean, moved by the server's step (``server_step``, the federation's).
Evaluated as fed_vs_central evaluates: the held-out loss on all of its frames.

    .venv/bin/python scripts/fedavg_lab.py --split iid --rounds 24 --local-steps 100 --server-momentum 0.7
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, script_parser  # noqa: E402


def node_datasets(fixtures, config, split: str, seed: int) -> list:
    """The nodes' datasets, decoded into memory: their own strips (``noniid``), or all their frames shuffled and
    dealt out in equal parts (``iid``)."""
    import numpy as np
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import load_dataset, load_metadata
    from node.frames import in_memory

    dt = resolve_delta_timestamps(config, load_metadata(fixtures.heldout))
    own = [in_memory(load_dataset(uri, delta_timestamps=dt), config.chunk_size) for uri in fixtures.nodes]
    if split == "noniid":
        return own
    union = torch.utils.data.ConcatDataset(own)
    order = np.random.default_rng(seed).permutation(len(union))
    return [torch.utils.data.Subset(union, part.tolist()) for part in np.array_split(order, len(own))]


def main() -> None:
    parser = script_parser(__doc__)
    add_options(parser, model=("learn", "SmolVLA spec"), task="reach", nodes=4, rounds=24, local_steps=100,
                batch_size=16, episodes=(25, "expert episodes per node dataset (fed_vs_central's --episodes)"),
                lr=1e-3, proximal_mu=0.01, server_lr=1.0, server_momentum=0.7, cache_dir=".zk0/fixtures")
    parser.add_argument("--split", choices=["noniid", "iid"], default="noniid")
    parser.add_argument("--server-optimizer", choices=["none", "avgm"], default="avgm")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--drift-correction", choices=["none", "mean", "global"], default="none",
                        help="SCAFFOLD's correction in the space of the nodes' AdamW steps (node/drift.py, the "
                        "federation's drift-correction): each local step also moves by (the last round's mean update − "
                        "the node's own last update) / local steps; 'global': the "
                        "last round's global step (the server's, momentum included: what a node sees) for the mean")
    parser.add_argument("--every", type=int, default=6, help="the held-out loss every N rounds (and after the last)")
    args = parser.parse_args()

    import torch

    from aggregator.config import FederationConfig
    from aggregator.protocol.server_optimizer import ServerState, server_step
    from aggregator.tools.fixtures import sim_fixtures
    from node.datasets import load_metadata
    from node.drift import drift_shift, shifting, update_of
    from node.model import make_smolvla
    from node.params import get_trainable
    from node.train import TrainConfig, fedprox_train
    from scripts.fed_vs_central import heldout_loss, mean_of

    torch.set_num_threads(1)  # as a node's ClientApp (ZK0_TORCH_THREADS) and fed_vs_central's centralized run
    fixtures = sim_fixtures(Path(args.cache_dir), args.nodes, args.episodes, tasks=(args.task,))
    fed = FederationConfig(model=args.model, sim_task=args.task, rounds=args.rounds, learning_rate=args.lr,
                           lr_schedule=args.lr_schedule, server_optimizer=args.server_optimizer,
                           server_lr=args.server_lr, server_momentum=args.server_momentum,
                           cache_dir=args.cache_dir, heldout=fixtures.heldout)
    bundle = make_smolvla(fed.model, load_metadata(fixtures.heldout), Path(fed.cache_dir), seed=fed.seed)
    datasets = node_datasets(fixtures, bundle.config, args.split, fed.seed)
    global_arrays, state, opt = get_trainable(bundle.policy), ServerState(), fed.server_step_settings()
    print(f"{args.split}: {args.nodes} nodes × {args.rounds} rounds × {args.local_steps} local steps (batch "
          f"{args.batch_size}) = {args.nodes * args.rounds * args.local_steps} steps, frames per node "
          f"{[len(d) for d in datasets]}, server {opt.kind} η {opt.lr:g} β {opt.beta1:g}, lr {args.lr:g} "
          f"{args.lr_schedule}, μ {args.proximal_mu:g}", flush=True)
    t0 = time.perf_counter()
    last_mean, last_own = None, [None] * len(datasets)
    for round_ in range(1, args.rounds + 1):
        cfg = TrainConfig(steps=args.local_steps, batch_size=args.batch_size, proximal_mu=args.proximal_mu,
                          learning_rate=fed.learning_rate_at(round_), seed=fed.seed + round_, progress=False)
        replies = []
        for i, data in enumerate(datasets):
            correct = args.drift_correction != "none" and last_mean is not None
            shift = drift_shift(last_mean, last_own[i], args.local_steps) if correct else None
            fedprox_train(bundle, data, global_arrays, cfg,
                          after_step=shifting(bundle.policy, shift) if shift is not None else None)
            replies.append(get_trainable(bundle.policy))
        mean = mean_of(replies)
        last_own = [update_of(r, global_arrays) for r in replies]
        new_global, state = server_step(global_arrays, mean, state, opt)
        last_mean = {k: (mean if args.drift_correction == "mean" else new_global)[k] - global_arrays[k] for k in mean}
        global_arrays = new_global
        if round_ % args.every == 0 or round_ == args.rounds:
            print(f"round {round_}: held-out loss (all frames) {heldout_loss(fed, [global_arrays]):.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
