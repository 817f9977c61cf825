"""The held-out loss of saved models on every frame of the server's held-out set: the figure fed_vs_central.py
compares federated and centralized by, for checkpoints already on disk (a federated round's, the centralized run's).

Each argument is ``label=folder`` (or a folder), a folder holding a saved policy's ``model.safetensors``; the first
one is the reference the others are divided by. With ``--mean-of``, one more row: the mean of all the models given
after the reference (Polyak-Ruppert averaging of a run's last rounds).

    .venv/bin/python scripts/heldout_loss.py --episodes 25 \\
        centralized=outputs/fed-vs-central/centralized/checkpoint \\
        federated=outputs/fed-vs-central/federated/checkpoints/round_24
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scripts.evalkit import add_options, add_saved_models, md_row, md_rule, saved_models, script_parser  # noqa: E402


def main() -> None:
    parser = script_parser(__doc__)
    add_saved_models(parser)
    add_options(parser, mean_of=(False, "one more row: the mean of the models after the first"))
    args = parser.parse_args()
    named = saved_models(args)

    import torch

    from aggregator.config import FederationConfig
    from aggregator.tools.fixtures import sim_fixtures
    from scripts.fed_vs_central import checkpoint_arrays, heldout_loss

    torch.set_num_threads(max(1, int(os.environ.get("ZK0_TORCH_THREADS", "1"))))
    fixtures = sim_fixtures(Path(args.cache_dir), args.nodes, args.episodes, tasks=(args.task,))
    fed = FederationConfig(model=args.model, sim_task=args.task, cache_dir=args.cache_dir, heldout=fixtures.heldout)
    models = {label: checkpoint_arrays(folder) for label, folder in named}
    rows = [(label, [arrays]) for label, arrays in models.items()]
    if args.mean_of:
        rows.append((f"mean of {', '.join(list(models)[1:])}", list(models.values())[1:]))
    print(md_row("model", "held-out loss (all frames)", f"× {named[0][0]}", "s"))
    print(md_rule(4))
    reference = None
    for label, arrays in rows:
        t0 = time.perf_counter()
        loss = heldout_loss(fed, arrays)
        reference = reference or loss
        print(md_row(label, f"{loss:.4f}", f"{loss / reference:.2f}×", f"{time.perf_counter() - t0:.0f}"), flush=True)


if __name__ == "__main__":
    main()
