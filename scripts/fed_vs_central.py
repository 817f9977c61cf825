"""Federated vs centralized training of the same SmolVLA on the same simulated SO-100 data, evaluated the same way.

Runs (1) the verified federation with honest nodes, (2) the same with one sign-flipping adversary (Krum f=1), and
(3) centralized training on the union of the node datasets with the same total number of optimizer steps
(rounds × local steps × honest nodes) and batch size. Each result is evaluated on the server's held-out dataset
(flow-matching loss) and in closed loop in the MuJoCo world on evaluation seeds no dataset uses. Prints a
markdown table and writes it to ``--doc`` (default docs/fed-vs-central.md), between ``<!-- results -->`` and
``<!-- results:end -->``; the text around the markers is kept. Rows accumulate in ``<out>/results.json``, so one
row can be re-run alone (``--skip federated centralized``) as long as the budget is the same.

    .venv/bin/python scripts/fed_vs_central.py [--model learn] [--task reach] [--nodes 4] [--rounds 3]
        [--local-steps 20] [--episodes 4]

The levers of issue 31 item 3 change the honest federation only, ``--lr-schedule`` centralized's rates too
(docs/fed-vs-central.md, "Levers"):
``--server-optimizer avgm|adam --server-lr --server-momentum`` (the server's step along the verified mean),
``--keep-optimizer`` (each node keeps its AdamW moments), ``--drift-correction``, ``--local-lr``, ``--proximal-mu``,
``--validation-batches``, ``--lr-schedule``;
``--final-eval-episodes N`` evaluates only the last model in closed loop (with ``--eval-episodes 0``);
``--tail-average K`` also evaluates the mean of the last K rounds' global models, and of the centralized run's
parameters at the same step counts (one centralized "round" = nodes × local steps).

``--model`` is a named SmolVLA spec (node/model.py: ``learn`` trains its vision encoder and is the one that can
learn the task here; ``tiny`` is the tests' model), ``--task`` the simulated task the nodes record and the server
evaluates in closed loop.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from scripts.evalkit import add_options, script_parser  # noqa: E402


def centralized(fixtures, fed, steps: int, out: Path, round_steps: int, tail: int = 0, curve_every: int = 0) -> dict:
    """Train one policy on the union of the node datasets for ``steps`` steps, at the federation's learning rate of
    each round (``round_steps``: the steps a federated round takes, all nodes together); evaluate as the server
    does. With ``tail`` K: also the held-out loss of the mean of its parameters at the last K multiples of
    ``round_steps``, as ``tail_average`` takes the federation's. With ``curve_every`` N: the held-out loss every N
    rounds' steps, as ``heldout_curve`` reads the federation's."""
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps

    from aggregator.server_app import closed_loop_eval
    from node.datasets import load_dataset, load_metadata
    from node.frames import in_memory
    from node.model import make_smolvla, save_policy
    from node.params import get_trainable
    from node.train import TrainConfig, evaluate_loss, fedprox_train

    # One torch thread, as the nodes' ClientApps (ZK0_TORCH_THREADS): a second thread on two shared cores only spins
    # (docs/fed-vs-central.md), and the comparison must not give one side more threads.
    torch.set_num_threads(max(1, int(os.environ.get("ZK0_TORCH_THREADS", "1"))))
    meta = load_metadata(fixtures.heldout)
    bundle = make_smolvla(fed.model, meta, Path(fed.cache_dir), seed=fed.seed)
    dt = resolve_delta_timestamps(bundle.config, meta)
    # Decoded once into memory, as each node does (node.frames.in_memory): the same data, the same speed.
    union = torch.utils.data.ConcatDataset([in_memory(load_dataset(uri, delta_timestamps=dt), bundle.config.chunk_size)
                                            for uri in fixtures.nodes])
    heldout = load_dataset(fixtures.heldout, delta_timestamps=dt)
    initial = get_trainable(bundle.policy)
    snapshots: list[dict] = []
    curve: list[tuple[int, dict]] = []

    def snapshot(step: int) -> None:
        if tail and step % round_steps == 0 and step > steps - tail * round_steps:
            snapshots.append(get_trainable(bundle.policy))
        if curve_every and step % (curve_every * round_steps) == 0 and step < steps:
            curve.append((step, get_trainable(bundle.policy)))

    t0 = time.perf_counter()
    fedprox_train(bundle, union, initial, TrainConfig(steps=steps, batch_size=fed.batch_size,
                                                      learning_rate=fed.learning_rate, proximal_mu=0.0,
                                                      seed=fed.seed, progress=True), after_step=snapshot,
                  learning_rate_at=lambda step: fed.learning_rate_at(step // round_steps + 1))
    seconds = time.perf_counter() - t0
    last = get_trainable(bundle.policy)
    tail_loss = {}
    if snapshots:
        tail_loss = {"tail_average_loss": heldout_loss(fed, snapshots), "tail_average_of": len(snapshots)}
    loss, _ = evaluate_loss(bundle, heldout, last, max_batches=fed.eval_batches, seed=fed.seed)
    closed = closed_loop_eval(bundle, fed, out / "evaluate")
    save_policy(bundle, out / "checkpoint")
    final, *points = heldout_losses(fed, [[last], *([model] for _, model in curve)])
    if curve_every:
        tail_loss["heldout_curve"] = [*([step, loss] for (step, _), loss in zip(curve, points, strict=True)),
                                      [steps, final]]
    return {"server_eval_loss": loss, "heldout_loss": final, **closed, "train_seconds": seconds, **tail_loss}


def mean_of(models: list[dict]) -> dict:
    """The parameter-wise mean of models (float64 sum, then the models' dtype)."""
    import numpy as np

    return {k: np.mean([m[k].astype(np.float64) for m in models], axis=0).astype(models[0][k].dtype)
            for k in models[0]}


def checkpoint_arrays(folder: Path) -> dict:
    """The arrays of a saved policy (``folder/model.safetensors``: a federated round's checkpoint or the
    centralized run's); ``set_trainable`` takes the trainable ones from them."""
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def round_arrays(run_dir: Path, round_: int) -> dict:
    """The arrays of the run's checkpoint of ``round_``."""
    return checkpoint_arrays(run_dir / "checkpoints" / f"round_{round_}")


def heldout_loss(fed, models: list[dict]) -> float:
    """The flow-matching loss of the mean of ``models`` on every frame of the server's held-out set, noise and flow
    time fixed by the seed: the figure federated and centralized are compared by. The server's loss after each
    round reads ``eval_batches`` × 8 frames (32 by default): enough to follow a run, too few to compare two (the
    best federation was 1.51× centralized on 32 frames and 2.0× on all 1,750; docs/fed-vs-central.md)."""
    return heldout_losses(fed, [models])[0]


def heldout_losses(fed, groups: list[list[dict]]) -> list[float]:
    """``heldout_loss`` of each group of models, with one model and one held-out set for all of them (a learning
    curve's points)."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.params import trainable_names
    from node.train import evaluate_loss

    meta = load_metadata(fed.heldout)
    bundle = make_smolvla(fed.model, meta, Path(fed.cache_dir), seed=fed.seed)
    names = trainable_names(bundle.policy)
    heldout = load_dataset(fed.heldout, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
    return [evaluate_loss(bundle, heldout, mean_of([{n: m[n] for n in names} for m in models]), seed=fed.seed)[0]
            for models in groups]


def heldout_curve(fed, run_dir: Path, last_round: int, every: int, round_steps: int) -> list[list]:
    """The held-out loss (all frames) of the global model every ``every`` rounds and after the last, against the
    optimizer steps all nodes have taken by then: the federation's learning curve, step for step with
    centralized's."""
    rounds = sorted({*range(every, last_round + 1, every), last_round})
    losses = heldout_losses(fed, [[round_arrays(run_dir, r)] for r in rounds])
    return [[r * round_steps, loss] for r, loss in zip(rounds, losses, strict=True)]


def tail_average(fed, run_dir: Path, rounds: list[int]) -> dict:
    """The held-out loss of the mean of the global models of ``rounds`` (Polyak-Ruppert averaging of the last
    rounds: the server's momentum step makes the last model swing round to round, docs/fed-vs-central.md)."""
    return {"tail_average_loss": heldout_loss(fed, [round_arrays(run_dir, r) for r in rounds]),
            "tail_average_of": len(rounds)}


def main() -> None:
    parser = script_parser(__doc__)
    add_options(parser, model=("learn", "SmolVLA spec (node/model.py; default learn)"),
                task=("reach", "simulated task: reach or pick_place (default reach)"),
                nodes=(4, "honest nodes (default 4)"), rounds=3, local_steps=20, batch_size=8,
                episodes=(4, "expert episodes per node dataset"), eval_episodes=(10, "closed-loop evaluation episodes"),
                eval_max_steps=(0, "closed-loop episode limit (0: the task's own, the benchmark's: reach 150, "
                                   "pick_place 300)"), out="outputs/fed-vs-central", cache_dir=".zk0/fixtures",
                doc="docs/fed-vs-central.md")
    parser.add_argument("--skip", nargs="*", default=[], choices=["federated", "adversary", "centralized"])
    parser.add_argument("--selection", choices=["usefulness", "multikrum"], default="usefulness",
                        help="who the honest federation averages (FederationConfig.selection)")
    # The levers of issue 31 item 3 (docs/fed-vs-central.md, "Levers"): the honest federation only.
    parser.add_argument("--server-optimizer", choices=["none", "avgm", "adam"], default="none",
                        help="the server's step along the verified mean (FederationConfig.server_optimizer)")
    parser.add_argument("--server-lr", type=float, default=1.0, help="the server step's lr η")
    parser.add_argument("--server-momentum", type=float, default=0.9, help="FedAvgM's β, FedAdam's β1")
    parser.add_argument("--keep-optimizer", action="store_true", help="each node keeps its AdamW moments")
    parser.add_argument("--rise-tolerance", type=float, default=-1.0,
                        help="ρ: how far a proven loss may rise before NO_IMPROVEMENT (default: the model spec's)")
    parser.add_argument("--drift-correction", action="store_true",
                        help="each node corrects its steps for its data's drift (node/drift.py)")
    parser.add_argument("--local-lr", type=float, default=1e-3,
                        help="the nodes' learning rate (centralized keeps 1e-3; with a server lr above 1, two-sided "
                        "learning rates)")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                        help="the learning rate round by round (FederationConfig.lr_schedule); centralized follows "
                        "the same rates, a round being nodes × local steps of its steps")
    parser.add_argument("--proximal-mu", type=float, default=0.01,
                        help="FedProx's μ: how strongly each node's steps are pulled back to the global model "
                        "(FederationConfig.proximal_mu; centralized trains without it)")
    parser.add_argument("--tail-average", type=int, default=0, metavar="K",
                        help="also the held-out loss of the mean of the last K rounds' global models, and of the "
                        "centralized run's parameters at the same step counts (Polyak-Ruppert averaging)")
    parser.add_argument("--curve-every", type=int, default=0, metavar="N",
                        help="also the held-out loss (all frames) every N rounds, both sides, at equal optimizer "
                        "steps: a table and heldout.png (about 10 s a point)")
    parser.add_argument("--validation-batches", type=int, default=4,
                        help="validation batches a reply is scored on (FederationConfig.validation_batches)")
    parser.add_argument("--final-eval-episodes", type=int, default=0,
                        help="closed-loop episodes for the last model of the honest federation and of centralized "
                        "(with --eval-episodes 0: the rounds are not evaluated in closed loop, which costs minutes "
                        "each)")
    args = parser.parse_args()

    from dataclasses import replace

    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo
    from aggregator.tools.fixtures import sim_fixtures
    from node.logs import setup_logging

    setup_logging(False)
    out = Path(args.out)
    fixtures = sim_fixtures(Path(args.cache_dir), args.nodes, args.episodes, tasks=(args.task,))

    def fed_config(**kw) -> FederationConfig:
        return FederationConfig(model=args.model, sim_task=args.task, local_steps=args.local_steps,
                                batch_size=args.batch_size, rounds=args.rounds, lr_schedule=args.lr_schedule,
                                cache_dir=args.cache_dir, fraction_evaluate=0.0, heldout=fixtures.heldout,
                                sim_eval_episodes=args.eval_episodes, sim_max_steps=args.eval_max_steps, **kw)

    budget = (f"SmolVLA `{args.model}`, task {args.task}: {args.nodes} honest nodes × {args.rounds} rounds × "
              f"{args.local_steps} local steps (batch "
              f"{args.batch_size}) = {args.nodes * args.rounds * args.local_steps} optimizer steps; "
              f"{args.episodes} expert episodes per node; closed loop: {args.eval_episodes} held-out episodes of "
              + (f"at most {args.eval_max_steps} steps" if args.eval_max_steps else "the task's step limit"))
    stored = out / "results.json"
    previous = json.loads(stored.read_text()) if stored.exists() else {}
    # Rows measured with another budget are not comparable: start again rather than mix them.
    rows: dict[str, dict] = previous.get("rows", {}) if previous.get("budget") == budget else {}

    def save(name: str, row: dict) -> None:
        rows[name] = {**row, "measured": time.strftime("%Y-%m-%d %H:%M")}
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps({"budget": budget, "rows": rows}, indent=2, default=str))

    # A schedule changes both sides (centralized follows the federation's rates): each row is compared with the
    # centralized row of its own schedule.
    schedule = f", {args.lr_schedule} lr" if args.lr_schedule != "constant" else ""
    if "federated" not in args.skip:
        t0 = time.perf_counter()
        levers = dict(server_optimizer=args.server_optimizer, server_lr=args.server_lr,
                      server_momentum=args.server_momentum, keep_optimizer=args.keep_optimizer,
                      drift_correction=args.drift_correction,
                      validation_batches=args.validation_batches, learning_rate=args.local_lr,
                      proximal_mu=args.proximal_mu, rise_tolerance=args.rise_tolerance)
        fed = fed_config(krum_f=0, krum_m=max(1, args.nodes - 1), selection=args.selection, **levers)
        s = run_demo(DemoConfig(nodes=args.nodes, rounds=args.rounds, out=str(out / "federated"),
                                cache_dir=args.cache_dir, episodes=args.episodes, eval_episodes=args.eval_episodes),
                     fed)
        row = federated_row(s, time.perf_counter() - t0)
        row["heldout_loss"] = heldout_loss(fed, [round_arrays(out / "federated", s["rounds"][-1]["round"])])
        row["lr_schedule"] = args.lr_schedule
        if args.curve_every:
            row["heldout_curve"] = heldout_curve(fed, out / "federated", s["rounds"][-1]["round"], args.curve_every,
                                                 args.local_steps * args.nodes)
        if args.final_eval_episodes:
            row.update(final_closed_loop(fed, out / "federated", s["rounds"][-1]["round"], args.final_eval_episodes))
        if args.tail_average:
            last = s["rounds"][-1]["round"]
            row.update(tail_average(fed, out / "federated", list(range(max(1, last - args.tail_average + 1),
                                                                       last + 1))))
        save(f"federated (honest, selection {args.selection}{lever_label(levers)}{schedule})", row)
    if "adversary" not in args.skip:
        # One more node, sign-flipping: Krum with f=1 needs n > 4 verified replies.
        t0 = time.perf_counter()
        n = max(args.nodes + 1, 5)
        s = run_demo(DemoConfig(nodes=n, rounds=args.rounds, out=str(out / "adversary"), cache_dir=args.cache_dir,
                                episodes=args.episodes, eval_episodes=args.eval_episodes, adversary="sign-flip"),
                     adversarial := fed_config(krum_f=1, krum_m=max(1, n - 3)))
        row = federated_row(s, time.perf_counter() - t0, adversary=out / "adversary" / "wallets" / f"node{n - 1}.json")
        row["heldout_loss"] = heldout_loss(adversarial, [round_arrays(out / "adversary", s["rounds"][-1]["round"])])
        save(f"federated + 1 sign-flipper ({n} nodes, Krum f=1)", row)
    if "centralized" not in args.skip:
        t0 = time.perf_counter()
        steps = args.rounds * args.local_steps * args.nodes
        fed = fed_config(krum_f=0)
        if args.final_eval_episodes:  # its one model in closed loop as the federation's last one: as many seeds
            fed = replace(fed, sim_eval_episodes=args.final_eval_episodes)
        res = centralized(fixtures, fed, steps, out / "centralized", round_steps=args.local_steps * args.nodes,
                          tail=args.tail_average, curve_every=args.curve_every)
        save(f"centralized (union, {steps} steps{schedule})",
             {**res, "lr_schedule": args.lr_schedule, "seconds": time.perf_counter() - t0})

    lines = ["| run | held-out loss (all frames) | × centralized | mean of the last models | server eval loss "
             "(32 frames) | loss per round (32 frames) | honest replies averaged in | reward shares by node | "
             "adversary selected | closed-loop success | success per round | mean episode length | wall s |",
             "|---|---:|---:|---:|---:|---|---|---|---:|---:|---|---:|---:|"]
    central = {r.get("lr_schedule", "constant"): r["heldout_loss"] for name, r in rows.items()
               if name.startswith("centralized") and "heldout_loss" in r}
    for name, r in rows.items():
        per_round = " → ".join(f"{x:.3f}" for x in r.get("per_round", [])) or "-"
        success = " → ".join(f"{x:.0%}" for x in r.get("success_per_round", []) if x is not None) or "-"
        shares = " · ".join(f"{x:.0%}" for x in r.get("reward_shares", [])) or "-"
        tail = (f"{r['tail_average_loss']:.4f} ({r['tail_average_of']})" if "tail_average_loss" in r else "-")
        held = f"{r['heldout_loss']:.4f}" if "heldout_loss" in r else "-"
        reference = central.get(r.get("lr_schedule", "constant"))
        ratio = f"{r['heldout_loss'] / reference:.2f}×" if reference and "heldout_loss" in r else "-"
        lines.append(f"| {name} | {held} | {ratio} | {tail} | {r['server_eval_loss']:.4f} | {per_round} | "
                     f"{r.get('honest_selected', '-')} | "
                     f"{shares} | {r.get('adversary_selected', '-')} | "
                     f"{closed_loop_cell(r)} | {success} | "
                     f"{r.get('mean_episode_length', float('nan')):.0f} | {r['seconds']:.0f} |")
    plot_success(rows, args.rounds, out / "success.png")
    table = "\n".join(lines)
    curves = {name: r["heldout_curve"] for name, r in rows.items() if r.get("heldout_curve")}
    if curves:
        plot_curves(curves, out / "heldout.png")
        table += "\n\n" + curve_table(curves)
    print(budget)
    print(table)
    write_doc(Path(args.doc), f"Measured {time.strftime('%Y-%m-%d')} on this machine (CPU). "
                              f"Budget: {budget}.\n\n{table}")


def lever_label(levers: dict) -> str:
    """The row's levers, when any is not the default."""
    parts = []
    if levers["server_optimizer"] != "none":
        parts.append(f"server {levers['server_optimizer']} η {levers['server_lr']:g} β {levers['server_momentum']:g}")
    if levers["keep_optimizer"]:
        parts.append("node Adam kept")
    if levers["drift_correction"]:
        parts.append("drift correction")
    if levers["learning_rate"] != 1e-3:
        parts.append(f"local lr {levers['learning_rate']:g}")
    if levers["proximal_mu"] != 0.01:
        parts.append(f"FedProx μ {levers['proximal_mu']:g}")
    if levers["validation_batches"] != 4:
        parts.append(f"{levers['validation_batches']} validation batches")
    if levers.get("rise_tolerance", -1.0) >= 0:
        parts.append(f"ρ {levers['rise_tolerance']:g}")
    return "".join(f", {p}" for p in parts)


def final_closed_loop(fed, run_dir: Path, last_round: int, episodes: int) -> dict:
    """The closed-loop success of the run's last model on ``episodes`` evaluation seeds (the server's evaluation,
    once, instead of after every round)."""
    from dataclasses import replace

    from aggregator.server_app import closed_loop_eval
    from node.datasets import load_metadata
    from node.model import make_smolvla
    from node.params import set_trainable, trainable_names

    bundle = make_smolvla(fed.model, load_metadata(fed.heldout), Path(fed.cache_dir), seed=fed.seed)
    arrays = round_arrays(run_dir, last_round)
    set_trainable(bundle.policy, {name: arrays[name] for name in trainable_names(bundle.policy)})
    t0 = time.perf_counter()
    res = closed_loop_eval(bundle, replace(fed, sim_eval_episodes=episodes), run_dir / "evaluate" / "final")
    return {**res, "final_eval_seconds": time.perf_counter() - t0}


def federated_row(summary: dict, seconds: float, adversary: Path | None = None) -> dict:
    """A federation's table row: its last round, the loss after every round, and (given the adversary's wallet
    file) in how many rounds Krum selected the adversary's reply."""
    row = {**summary["rounds"][-1], "seconds": seconds,
           "per_round": [summary["initial_eval_loss"], *(r["server_eval_loss"] for r in summary["rounds"])],
           "success_per_round": [r.get("success_rate") for r in summary["rounds"]]}
    from contracts import read_address

    address = read_address(adversary) if adversary is not None else None  # the keystore read once, not per reply
    honest = [n for r in summary["rounds"] for n in r["nodes"] if address is None or n["claimed_address"] != address]
    useful = [n for n in honest if n["status"] in ("SELECTED", "NOT_SELECTED")]
    row["honest_selected"] = (f"{sum(n['status'] == 'SELECTED' for n in honest)}/{len(honest)} "
                              f"({len(useful)} verified)")
    paid = summary.get("incentives", {})  # wallet → pending rewards, in node order (the demo's wallets)
    total = sum(w.get("rewards_pending", 0) for w in paid.values())
    if total:
        row["reward_shares"] = [w.get("rewards_pending", 0) / total for w in paid.values()]
    if address is not None:
        statuses = [n["status"] for r in summary["rounds"] for n in r["nodes"] if n["claimed_address"] == address]
        row["adversary_selected"] = f"{statuses.count('SELECTED')}/{len(statuses)} rounds"
    return row


def plot_success(rows: dict[str, dict], rounds: int, path: Path) -> None:
    """Closed-loop success after each round of the federations, and the centralized run's (same optimizer steps)
    at the last round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in rows.items():
        if r.get("success_per_round"):
            ax.plot(range(1, len(r["success_per_round"]) + 1), r["success_per_round"], marker="o", label=name)
        elif "success_rate" in r:
            ax.scatter([rounds], [r["success_rate"]], marker="*", s=150, color="black", label=name, zorder=3)
    ax.set(title="closed-loop success (held-out seeds)", xlabel="round", ylabel="success", ylim=(-0.05, 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def closed_loop_cell(row: dict) -> str:
    """A row's closed-loop success with its 95 % Wilson interval over the episodes run."""
    if "success_rate" not in row:
        return "-"
    episodes = row.get("sim_eval_episodes")
    if not episodes:
        return f"{row['success_rate']:.0%}"
    from sim.evaluate import wilson_interval

    low, high = wilson_interval(round(row["success_rate"] * episodes), episodes)
    return f"{row['success_rate']:.0%} ({low:.1%}-{high:.1%}, {episodes} seeds)"


def curve_table(curves: dict[str, list]) -> str:
    """The runs' held-out losses (all frames) by optimizer steps, one row a run."""
    steps = sorted({step for curve in curves.values() for step, _ in curve})
    lines = ["| held-out loss (all frames) at optimizer steps | " + " | ".join(f"{s:,}" for s in steps) + " |",
             "|---|" + "---:|" * len(steps)]
    for name, curve in curves.items():
        at = dict((step, loss) for step, loss in curve)
        lines.append(f"| {name} | " + " | ".join(f"{at[s]:.4f}" if s in at else "-" for s in steps) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, list], path: Path) -> None:
    """Held-out loss (all frames) against optimizer steps, every run on one plot (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot([s for s, _ in curve], [loss for _, loss in curve], marker="o", label=name)
    ax.set(title="held-out loss (all frames)", xlabel="optimizer steps (all nodes)", ylabel="flow-matching loss",
           yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_doc(doc: Path, results: str) -> None:
    """Put ``results`` between the doc's result markers, keeping what is written before and after them."""
    from doc_section import write_section

    write_section(doc, "<!-- results -->", "<!-- results:end -->", results, title="# Federated vs centralized\n\n")


if __name__ == "__main__":
    main()
