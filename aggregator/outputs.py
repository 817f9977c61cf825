"""What a run leaves behind (DESIGN.md §6): summary.json, metrics.json, charts, contributions.csv, checkpoints.

Everything is rewritten after every round (atomically: write then rename), so a crash mid-run loses at most the
round in progress and a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import threading
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from aggregator.protocol.gate import Outcome
from aggregator.protocol.strategy import RoundLog
from aggregator.protocol.verification import UNSIGNED

log = logging.getLogger(__name__)

ACCEPTED = ("SELECTED", "NOT_SELECTED")  # verified replies; any other status is the gate's rejection
CSV_FIELDS = ("round", "node_id", "address", "claimed_address", "status", "reason", "detail", "loss_before",
              "loss_after", "score", "weight", "train_loss", "update_hash", "proof_hash", "data_commitment",
              "tx_hash")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _short(text: str | None) -> str:
    """0x1234…cdef: enough of an id or hash to tell rows apart in a narrow terminal."""
    if not text:
        return "-"
    return text if len(text) <= 10 else f"{text[:6]}…{text[-4:]}"


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` uncut: where the output is not a terminal (a piped log, rich's default 80 columns), widen the
    console to the table's natural width rather than let rich squeeze cells to ``0x2cc6…4…`` and ``NOT_SELEC…``."""
    if not console.is_terminal:
        console.width = max(console.width, Measurement.get(console, console.options.update_width(1000), table).maximum)
    console.print(table)


def _node_entry(o: Outcome) -> dict:
    fields = ("node_id", "address", "claimed_address", "status", "reason", "detail", "loss_before", "loss_after",
              "score", "weight", "train_loss", "update_hash", "proof_hash", "data_commitment", "tx_hash",
              "prove_seconds", "verify_seconds", "proof_bytes", "dp_epsilon")
    return {name: getattr(o, name) for name in fields}


class RunOutputs:
    """Writes ``outputs/<run-id>/`` as the run goes."""

    def __init__(self, out_dir: Path, run_id: str, config: dict, console: Console | None = None) -> None:
        self.dir = Path(out_dir)
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.console = console or Console()
        self.summary: dict = {"run_id": run_id, "config": config, "chain": None, "initial_eval_loss": None,
                              "final_eval_loss": None, "rounds": []}
        self.metrics: dict = {"run_id": run_id, "initial": {}, "rounds": []}
        self._pending_tx: dict[tuple, str | None] = {}  # chain transactions, by (round, node_id | open | close)
        self._verdicts: dict[tuple, list] = {}  # (round, node_id): [status, reason, detail] the chain decided
        self._lock = threading.Lock()  # the chain sender thread writes too

    @classmethod
    def reopen(cls, out_dir: Path, console: Console | None = None) -> RunOutputs:
        """The outputs of a run that has stopped, to note what reached the chain since (``zk0agg sync``)."""
        out = Path(out_dir)
        try:
            summary = json.loads((out / "summary.json").read_text())
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            from node.errors import UserError

            raise UserError(f"cannot read the run in {out}: {err}") from None
        outputs = cls(out, summary["run_id"], summary["config"], console=console)
        outputs.summary, outputs.metrics = summary, metrics
        return outputs

    def set_chain(self, chain_id: int, registry: str, **extra) -> None:
        self.summary["chain"] = {"chain_id": chain_id, "registry": registry, **extra}
        self.flush()

    def initial(self, server_eval_loss: float, **extra) -> None:
        """Round 0: the initial global model's held-out loss (and, given ``success_rate``, its closed-loop success:
        the untrained floor the success chart draws)."""
        self.summary["initial_eval_loss"] = server_eval_loss
        if extra.get("success_rate") is not None:
            self.summary["initial_success_rate"] = extra["success_rate"]
        self.metrics["initial"] = {"server_eval_loss": server_eval_loss, **extra}
        self.console.print(f"[bold]round 0[/] server eval loss {server_eval_loss:.4f} (initial global model)")
        self.flush()

    def add_round(self, rlog: RoundLog, server_eval_loss: float, new_global_hash: str, seconds: dict,
                  **extra_metrics) -> None:
        nodes = [_node_entry(o) for o in sorted(rlog.outcomes, key=lambda o: o.node_id)]
        entry = {"round": rlog.round, "global_hash": rlog.global_hash, "new_global_hash": new_global_hash,
                 "server_eval_loss": server_eval_loss, "kept_global": rlog.kept_global, "note": rlog.note,
                 "no_reply": list(rlog.no_reply), "validation_loss": rlog.validation_loss, "krum": rlog.krum,
                 "selection": rlog.selection, "mean_score": rlog.mean_score, "closest_pair": rlog.closest_pair,
                 **extra_metrics, "nodes": nodes}
        if rlog.sketch_seed is not None:  # published once the round's replies are in: anyone can redo the sketches
            entry["sketch_seed"] = str(rlog.sketch_seed)
        with self._lock:
            self.summary["rounds"].append(entry)
            self._apply_tx()
            self.summary["final_eval_loss"] = server_eval_loss
        self.metrics["rounds"].append({
            "round": rlog.round, "server_eval_loss": server_eval_loss,
            "client_train_loss": {str(n["node_id"]): n["train_loss"] for n in nodes if n["train_loss"] is not None},
            "seconds": seconds, "aggregator_seconds": dict(rlog.timings), **extra_metrics,
        })
        self.flush()
        print_table(self.console, self.round_table(entry))

    def round_table(self, entry: dict) -> Table:
        extra = f", sim success {entry['success_rate']:.0%}" if "success_rate" in entry else ""
        if "dp_epsilon" in entry:  # client-side DP: what each node has spent so far
            eps = "∞" if entry["dp_epsilon"] is None else f"{entry['dp_epsilon']:.2f}"
            extra += f", DP ε = {eps} (δ = {entry['dp_delta']:g})"
        table = Table(title=f"round {entry['round']}: server eval loss {entry['server_eval_loss']:.4f}{extra}"
                      + (" (global model kept)" if entry["kept_global"] else ""), title_justify="left")
        for col in ("node", "address", "status", "train", "proof loss", "score", "weight", "update", "tx"):
            table.add_column(col, no_wrap=True)
        for n in entry["nodes"]:
            losses = f"{n['loss_before']:.3f}→{n['loss_after']:.3f}" if n["loss_before"] is not None else "-"
            status = n["status"] if n["status"] in ("SELECTED", "NOT_SELECTED") else f"[red]{n['status']}[/]"
            table.add_row(_short(str(n["node_id"])), _short(n["address"]), status,
                          f"{n['train_loss']:.4f}" if n["train_loss"] is not None else "-", losses,
                          f"{n['score']:+.4f}" if n.get("score") is not None else "-",
                          f"{n['weight']:.0%}" if n.get("weight") else "-",
                          _short(n["update_hash"]), _short(n["tx_hash"]))
        if entry.get("no_reply"):
            table.caption = "no reply within the round's timeout: " + ", ".join(map(str, entry["no_reply"]))
        return table

    def on_chain(self, op, tx_hash: str | None) -> None:
        """A journalled chain operation landed: note its transaction (records may land after their round)."""
        key = (op.round, op.payload["node_id"]) if op.kind in ("record", "reject") else (op.round, op.kind)
        with self._lock:
            self._pending_tx[key] = tx_hash
            judged = op.payload.get("verdict") is not None  # a held-out reply the chain has now judged
            if judged:
                self._verdicts[key] = op.payload["verdict"]
            self._apply_tx()
            self._write(plots=judged)  # the charts show statuses, not transactions: redrawn only when one changed

    def _apply_tx(self) -> None:
        for entry in self.summary["rounds"]:
            for key in ("open", "close"):
                if (entry["round"], key) in self._pending_tx:
                    entry[f"{key}_tx_hash"] = self._pending_tx[(entry["round"], key)]
            for n in entry["nodes"]:
                if (entry["round"], n["node_id"]) in self._pending_tx:
                    n["tx_hash"] = self._pending_tx[(entry["round"], n["node_id"])]
                if verdict := self._verdicts.get((entry["round"], n["node_id"])):
                    n["status"], n["reason"], n["detail"] = verdict

    def save_checkpoint(self, round_: int, bundle) -> Path:
        """LeRobot ``save_pretrained`` format: ``SmolVLAPolicy.from_pretrained(path)`` loads it."""
        from node.model import save_policy

        return save_policy(bundle, self.dir / "checkpoints" / f"round_{round_}")

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self, plots: bool = True) -> None:
        _write_atomic(self.dir / "summary.json", json.dumps(self.summary, indent=2, default=str))
        _write_atomic(self.dir / "metrics.json", json.dumps(self.metrics, indent=2, default=str))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for entry in self.summary["rounds"]:
            for n in entry["nodes"]:
                writer.writerow({"round": entry["round"], **n})
        _write_atomic(self.dir / "contributions.csv", buf.getvalue())
        if plots and self.metrics["rounds"]:
            self._plot()

    def _plot(self) -> None:
        for name, fig in (("losses.png", loss_figure(self.summary, self.metrics)),
                          ("success.png", success_figure(self.summary, self.metrics))):
            if fig is not None:  # written then renamed, like the files above: a reader never sees half a PNG
                tmp = self.dir / f"{name}.tmp"
                fig.savefig(tmp, dpi=100, format="png")
                os.replace(tmp, self.dir / name)


# ----------------------------------------------------------------------------------------------- charts

KEPT_TEXT = "global model kept (no reply averaged in)"
REJECTED_COLOR = "#c62828"
KEPT_COLOR = "#e3e3e3"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for z = 1.96): unlike p ± z·√(p(1−p)/n) it stays inside
    [0, 1] and does not shrink to nothing at 0 or n successes, which small closed-loop evaluations often give."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def node_labels(rounds: list[dict]) -> dict[str, str]:
    """Each Flower node id of the run (as text) → the name a chart gives it: its wallet, short (0x1234…abcd).

    A node whose signature never held for its wallet (an unattributable rejection) is named by the wallet it
    claimed, marked "(claimed)", or without one by its reply's key on chain, "(reply key)"; two nodes that would
    read the same get their node id's tail."""
    wallets: dict[str, str] = {}
    claimed: dict[str, str] = {}
    keys: dict[str, str] = {}  # no wallet claimed at all (a malformed reply): the reply's own key on chain
    for entry in rounds:
        for n in entry.get("nodes", []):
            node = str(n["node_id"])
            if n["status"] not in UNSIGNED and n.get("address"):
                wallets[node] = n["address"]
            elif n.get("claimed_address"):
                claimed[node] = n["claimed_address"]
            elif n.get("address"):
                keys[node] = n["address"]
    labels = {node: f"{_short(address)} (reply key)" for node, address in keys.items()}
    labels.update({node: f"{_short(address)} (claimed)" for node, address in claimed.items()})
    labels.update({node: _short(address) for node, address in wallets.items()})
    seen = Counter(labels.values())
    return {node: f"{label} · node …{node[-4:]}" if seen[label] > 1 else label for node, label in labels.items()}


def _rounds_axis(ax, first: int, last: int) -> None:
    """Whole rounds only on the x axis (never 1.25), with half a round of room on each side."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(first - 0.5, last + 0.5)
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)


def _mark_kept(ax, rounds: list[dict], label: bool) -> None:
    """A grey band over each round that kept the global model, "kept" written at its top."""
    from matplotlib.transforms import blended_transform_factory

    top = blended_transform_factory(ax.transData, ax.transAxes)
    for i, r in enumerate(r for r in rounds if r.get("kept_global")):
        ax.axvspan(r["round"] - 0.45, r["round"] + 0.45, color=KEPT_COLOR, zorder=0,
                   label=KEPT_TEXT if label and i == 0 else None)
        ax.text(r["round"], 0.985, "global kept", transform=top, ha="center", va="top", fontsize=7.5, color="0.4")


def loss_figure(summary: dict, metrics: dict):
    """losses.png: each node's train loss by round (named by wallet; the gate's rejections a red ✕, the replies
    Krum left out hollow), and the held-out loss of the global model; rounds that kept the global model shaded."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    rounds = summary.get("rounds") or []
    if not rounds:
        return None
    labels = node_labels(rounds)
    last = max(r["round"] for r in rounds)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_nodes, ax_eval = fig.subplots(1, 2, width_ratios=(1.35, 1))
    _mark_kept(ax_nodes, rounds, label=False)
    colors = {node: f"C{i % 10}" for i, node in enumerate(sorted(labels, key=labels.get))}
    bottom = blended_transform_factory(ax_nodes.transData, ax_nodes.transAxes)
    unplotted = False
    for node in sorted(labels, key=labels.get):
        replies = [(r["round"], n) for r in rounds for n in r.get("nodes", []) if str(n["node_id"]) == node]
        with_loss = [(rnd, n) for rnd, n in replies if isinstance(n.get("train_loss"), int | float)]
        color = colors[node]
        ax_nodes.plot([rnd for rnd, _ in with_loss], [n["train_loss"] for _, n in with_loss], color=color, lw=1.2,
                      alpha=0.8, label=labels[node])
        for rnd, n in replies:
            status = n["status"]
            if status in ACCEPTED and n.get("train_loss") is not None:
                ax_nodes.plot(rnd, n["train_loss"], "o", ms=7, color=color,
                              mfc=color if status == "SELECTED" else "white", mew=1.5, zorder=3)
            elif status not in ACCEPTED:  # rejected: a red ✕ at its reported loss, or on the axis without one
                y, where = (n["train_loss"], ax_nodes.transData) if n.get("train_loss") is not None else (0.0, bottom)
                unplotted |= n.get("train_loss") is None
                ax_nodes.plot(rnd, y, "X", ms=8, color=REJECTED_COLOR, mec="white", mew=0.8, zorder=4,
                              transform=where, clip_on=False)
    ax_nodes.set(title="client train loss, by wallet", ylabel="train loss (node-reported)")
    _rounds_axis(ax_nodes, min(r["round"] for r in rounds), last)
    handles, names = ax_nodes.get_legend_handles_labels()
    marks = [Line2D([], [], marker="o", ls="", color="0.3", label="selected (averaged in)"),
             Line2D([], [], marker="o", ls="", color="0.3", mfc="white", mew=1.5, label="verified, not selected"),
             Line2D([], [], marker="X", ls="", color=REJECTED_COLOR, ms=9, mec="white",
                    label="rejected by the gate" + (" (on the axis: no loss reported)" if unplotted else ""))]
    if any(r.get("kept_global") for r in rounds):
        from matplotlib.patches import Patch

        marks.append(Patch(color=KEPT_COLOR, label=KEPT_TEXT))
    fig.legend(handles + marks, names + [h.get_label() for h in marks], loc="outside lower center",
               ncol=min(4, max(2, (len(handles) + len(marks) + 2) // 3)), fontsize=8, frameon=False)

    _mark_kept(ax_eval, rounds, label=False)
    initial = summary.get("initial_eval_loss", (metrics.get("initial") or {}).get("server_eval_loss"))
    points = ([(0, initial)] if initial is not None else []) + [(r["round"], r["server_eval_loss"]) for r in rounds]
    ax_eval.plot([x for x, _ in points], [y for _, y in points], color="black", lw=1.5, marker="o", ms=5)
    for r in rounds:
        if r.get("kept_global"):
            ax_eval.plot(r["round"], r["server_eval_loss"], "o", ms=9, mfc="white", mec="black", mew=1.5, zorder=3)
    ax_eval.set(title="server eval loss of the global model (held-out)", ylabel="loss")
    _rounds_axis(ax_eval, 0 if initial is not None else min(r["round"] for r in rounds), last)
    return fig


def success_figure(summary: dict, metrics: dict):
    """success.png: the closed-loop success rate in percent with each point's 95 % Wilson interval and episode
    count, and the untrained model's rate as a reference line where the run recorded one; None without data."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    rounds = [r for r in summary.get("rounds") or [] if r.get("success_rate") is not None]
    if not rounds:
        return None
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    ax = fig.subplots()
    _mark_kept(ax, rounds, label=True)
    xs, ys, lo, hi, counts = [], [], [], [], set()
    for r in rounds:
        rate, n = 100 * r["success_rate"], r.get("sim_eval_episodes")
        xs.append(r["round"])
        ys.append(rate)
        if n:
            counts.add(n)
            low, high = wilson_interval(round(r["success_rate"] * n), n)
            lo.append(rate - 100 * low)
            hi.append(100 * high - rate)
            text = f"{round(r['success_rate'] * n)}/{n}"
        else:
            lo.append(0.0)
            hi.append(0.0)
            text = f"{rate:.0f} %"
        ax.annotate(text, (r["round"], rate), textcoords="offset points", xytext=(8, 0), va="center", fontsize=8,
                    color="0.25", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    zorder=5)
    ax.errorbar(xs, ys, yerr=[lo, hi], color="#1f5fae", marker="o", ms=6, capsize=4, lw=1.5,
                label="global model" + (" (95 % Wilson interval)" if counts else ""))
    floor = success_floor(summary, metrics)
    if floor is not None:
        ax.axhline(100 * floor, color="0.4", ls="--", lw=1.2, label=f"untrained model: {100 * floor:.0f} %")
    episodes = (f"{counts.pop()} episodes per round" if len(counts) == 1 else
                "episodes per round vary" if counts else "episode count not recorded")
    ax.set(title=f"closed-loop success in the simulator ({episodes})", ylabel="success", ylim=(-3, 103))
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    _rounds_axis(ax, min(xs), max(xs))
    ax.legend(fontsize=8, loc="upper left")
    return fig


def success_floor(summary: dict, metrics: dict) -> float | None:
    """The untrained (initial) model's closed-loop success rate, where the run recorded one."""
    for value in (summary.get("initial_success_rate"), (metrics.get("initial") or {}).get("success_rate")):
        if isinstance(value, int | float):
            return float(value)
    return None
