"""LoRA mode's two measured choices (LORA-NOTES.md): how adapters are averaged, and whether LoRA is the default.

``aggregation``: how wrong is averaging LoRA's A and B separately? Measured on adapters trained by real nodes.
Each of ``--nodes`` nodes trains the same LoRA-wrapped SmolVLA (both A and B trainable: standard LoRA) from the
same initialisation on its own synthetic dataset. Per adapted layer it reports the relative error of the separate
averages against the average of the nodes' weight changes:

    ‖s·mean(B_i)·mean(A_i) − s·mean(B_i·A_i)‖ / ‖s·mean(B_i·A_i)‖   (the change the federation should apply)

and, for FFA-LoRA (A frozen at its seeded init, only B trained: node/lora.py), the same error, which is zero up to
float rounding because the product is linear in B.

``learning``: what learns best at the demo's size: the same steps from the same model on the same data, full
trainable set (rank 0) and LoRA at each ``--ranks``, the held-out loss before and after (one node, centralized: the
cheap proxy of a federation's learning).

    .venv/bin/python scripts/lora_eval.py aggregation --nodes 4 --steps 50
    .venv/bin/python scripts/lora_eval.py learning --model learn --steps 200 --ranks 0 8 32
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from aggregator.tools.fixtures import synthetic_fixtures
from node.datasets import load_dataset, load_metadata
from node.model import make_smolvla
from node.params import get_trainable
from node.train import TrainConfig, evaluate_loss, fedprox_train

log = logging.getLogger("lora_aggregation")


def train_nodes(spec: str, rank: int, uris: list[str], cache: Path, steps: int, train_a: bool, lr: float):
    """Every node's adapter (A and B) after ``steps`` steps from the same initial adapter: name → array each."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    out = []
    for i, uri in enumerate(uris):
        meta = load_metadata(uri)
        bundle = make_smolvla(spec, meta, cache, lora_rank=rank)
        if train_a:
            for name, p in bundle.policy.named_parameters():
                if ".lora_A." in name:
                    p.requires_grad_(True)
        dataset = load_dataset(uri, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
        start = get_trainable(bundle.policy)
        fedprox_train(bundle, dataset, start, TrainConfig(steps=steps, batch_size=8, learning_rate=lr,
                                                          proximal_mu=0.0, seed=i, progress=False))
        out.append({n: p.detach().numpy().copy() for n, p in bundle.policy.named_parameters() if ".lora_" in n})
    return out


def errors(nodes) -> dict[str, float]:
    """Per adapted layer: the relative error of s·mean(B)·mean(A) against s·mean(B·A) (s cancels)."""
    result = {}
    for name_b in [n for n in nodes[0] if ".lora_B." in n]:
        layer, name_a = name_b.split(".lora_B.")[0], name_b.replace(".lora_B.", ".lora_A.")
        bs = [n[name_b].astype(np.float64) for n in nodes]
        As = [n[name_a].astype(np.float64) for n in nodes]  # noqa: N806
        exact = np.mean([b @ a for b, a in zip(bs, As, strict=True)], axis=0)
        separate = np.mean(bs, axis=0) @ np.mean(As, axis=0)
        result[layer] = float(np.linalg.norm(separate - exact) / max(np.linalg.norm(exact), 1e-30))
    return result


def learning(spec: str, ranks: list[int], uri: str, heldout: str, cache: Path, steps: int, lr: float) -> dict:
    """Held-out loss before and after ``steps`` steps, full trainable set (rank 0) or LoRA at each rank."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    out = {}
    for rank in ranks:
        meta = load_metadata(uri)
        bundle = make_smolvla(spec, meta, cache, lora_rank=rank)
        delta = resolve_delta_timestamps(bundle.config, meta)
        dataset, held = load_dataset(uri, delta_timestamps=delta), load_dataset(heldout, delta_timestamps=delta)
        start = get_trainable(bundle.policy)
        before, _ = evaluate_loss(bundle, held, start, max_batches=4)
        result = fedprox_train(bundle, dataset, start, TrainConfig(steps=steps, batch_size=8, learning_rate=lr,
                                                                   proximal_mu=0.0, progress=False))
        after, _ = evaluate_loss(bundle, held, max_batches=4)
        out[f"rank {rank}"] = {"trainable": sum(a.size for a in start.values()), "heldout_before": before,
                               "heldout_after": after, "train_seconds": result.seconds}
        log.info("%s rank %d: %d trainable, held-out loss %.4f -> %.4f in %d steps (%.0f s)", spec, rank,
                 out[f"rank {rank}"]["trainable"], before, after, steps, result.seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["aggregation", "learning"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[0, 8, 32])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--cache", default=".zk0/fixtures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lerobot").setLevel(logging.ERROR)
    fx = synthetic_fixtures(Path(args.cache), n_nodes=args.nodes, episodes=2, frames=24)
    if args.part == "learning":
        report = learning(args.model, args.ranks, fx.nodes[0], fx.heldout, Path(args.cache), args.steps, args.lr)
        print(json.dumps(report, indent=1))  # noqa: T201 (the script's output)
        return
    report = {}
    for label, train_a in (("lora (A and B trained)", True), ("ffa-lora (A frozen)", False)):
        errs = errors(train_nodes(args.model, args.rank, fx.nodes, Path(args.cache), args.steps, train_a, args.lr))
        report[label] = {"median": float(np.median(list(errs.values()))), "max": max(errs.values()),
                         "per_layer": errs}
        log.info("%s: relative error of mean(B)·mean(A) vs mean(B·A): median %.3g, max %.3g over %d layers",
                 label, report[label]["median"], report[label]["max"], len(errs))
    print(json.dumps(report, indent=1))  # noqa: T201 (the script's output)


if __name__ == "__main__":
    main()
