"""How the DP clipping bound C trades progress against the gate's false rejections, without running federations.

Trains each of N synthetic nodes once from the initial tiny SmolVLA (the federation's default training), then for each
C and each ε (σ calibrated over the run's rounds at δ = 1e-5) draws the DP noise a few times and measures what the
gate would see: the statement's proven losses (captured exactly as the node proves them, computed in float: no EZKL)
and the validation score on the aggregator's validation set. Reports, per (C, ε): the proven loss rises above ρ (the
NO_IMPROVEMENT check), scores below −τ (HARMFUL), and the scores' min / median. The table goes to ``--doc`` between
markers.

    .venv/bin/python scripts/dp_clip_sweep.py [--clips 0.003 0.01 0.03] [--epsilons 8 3 1] [--draws 3]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, md_row, md_rule, publish, script_parser  # noqa: E402

START, END = "<!-- clip-sweep:start -->", "<!-- clip-sweep:end -->"


def slice_loss(W, b, X, Y) -> float:  # noqa: N803 (the statement's names)
    import numpy as np

    return float(np.mean((X @ W.T + b - Y) ** 2))


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--clips", nargs="+", type=float, default=[0.003, 0.01, 0.03])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[8.0, 3.0, 1.0])
    add_options(parser, rounds=(3, "rounds the budget is spread over"), nodes=4,
                draws=(3, "noise draws per node, C and ε"), local_steps=20, rise_tolerance=0.25, harm_tolerance=0.1,
                cache_dir=Path(".zk0/fixtures"), doc=Path("docs/privacy.md"))
    args = parser.parse_args()

    import numpy as np
    import psutil
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps

    from aggregator.protocol.validation import ValidationConfig, Validator
    from aggregator.tools.fixtures import synthetic_fixtures
    from node.contribution import capture_update
    from node.datasets import load_dataset, load_metadata
    from node.dp import DPConfig, privatize, update_norm
    from node.model import make_smolvla
    from node.params import get_trainable
    from node.train import TrainConfig, fedprox_train

    t0, cpu0 = time.perf_counter(), sum(psutil.Process().cpu_times()[:2])
    torch.set_num_threads(1)
    fx = synthetic_fixtures(args.cache_dir, args.nodes)
    meta = load_metadata(fx.validation)
    bundle = make_smolvla("tiny", meta, args.cache_dir, seed=0)
    dt = resolve_delta_timestamps(bundle.config, meta)
    glob = get_trainable(bundle.policy)
    scorer = Validator(bundle, load_dataset(fx.validation, delta_timestamps=dt), ValidationConfig(4, 8, 1),
                       seed=0).open(1, glob)
    settings = [(c, None) for c in args.clips] + [(c, e) for c in args.clips for e in args.epsilons]
    seen: dict[tuple, list[tuple[float, float]]] = {s: [] for s in settings}
    norms, clean = [], []
    for i in range(args.nodes):
        data = load_dataset(fx.nodes[i], delta_timestamps=dt)
        fedprox_train(bundle, data, glob, TrainConfig(steps=args.local_steps, progress=False, seed=1 + i))
        trained = get_trainable(bundle.policy)
        norms.append(update_norm(glob, trained))
        clean.append(scorer.score(trained))
        for clip, eps in settings:
            cfg = DPConfig(clip, 0.0) if eps is None else DPConfig.for_epsilon(eps, args.rounds, clip)
            for draw in range(1 if eps is None else args.draws):
                sent = privatize(glob, trained, cfg, np.random.default_rng([i, draw]))
                s = capture_update(bundle, data, glob, sent, 16, seed=1 + i)
                rise = slice_loss(s.W_n, s.b_n, s.X_n, s.Y) / slice_loss(s.W_g, s.b_g, s.X_g, s.Y) - 1
                seen[(clip, eps)].append((rise, scorer.score(sent)))
    lines = [f"Measured by `scripts/dp_clip_sweep.py` on {time.strftime('%Y-%m-%d')}: {args.nodes} synthetic nodes, "
             f"{args.local_steps} local steps from the initial tiny SmolVLA (unclipped update norms "
             f"{', '.join(f'{n:.2f}' for n in norms)}; their validation scores "
             f"{', '.join(f'{s:+.3f}' for s in clean)}), "
             f"{args.draws} noise draws per node; ε over {args.rounds} rounds at δ = 1e-5; "
             f"{time.perf_counter() - t0:.0f} s wall, {sum(psutil.Process().cpu_times()[:2]) - cpu0:.0f} cpu s, load "
             f"{os.getloadavg()[0]:.1f}.", "",
             md_row("C", "ε", "σ", "replies", f"proven loss rise > ρ = {args.rise_tolerance:g} (max rise)",
                    f"score < −τ = −{args.harm_tolerance:g}", "score min / median"), md_rule(7)]
    for clip, eps in sorted(settings, key=lambda s: (s[0], -(s[1] or float("inf")))):
        rises, scores = np.array(seen[(clip, eps)]).T
        sigma = 0.0 if eps is None else DPConfig.for_epsilon(eps, args.rounds, clip).noise_multiplier
        lines.append(md_row(f"{clip:g}", "∞ (clip only)" if eps is None else f"{eps:g}", f"{sigma:.3f}", len(rises),
                            f"{int(np.sum(rises > args.rise_tolerance))} ({rises.max():+.1%})",
                            int(np.sum(scores < -args.harm_tolerance)),
                            f"{scores.min():+.4f} / {np.median(scores):+.4f}"))
    publish("\n".join(lines), args.doc, START, END)


if __name__ == "__main__":
    main()
