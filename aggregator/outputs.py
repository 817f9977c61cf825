"""What a run leaves behind (DESIGN.md §6): summary.json, metrics.json, charts, contributions.csv, checkpoints.

Everything is rewritten after every round (atomically: write then rename), so a crash mid-run loses at most the
round in progress and a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
from pathlib import Path

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from aggregator.protocol.gate import Outcome
from aggregator.protocol.strategy import RoundLog

log = logging.getLogger(__name__)

CSV_FIELDS = ("round", "node_id", "address", "claimed_address", "status", "reason", "detail", "loss_before",
              "loss_after", "score", "train_loss", "update_hash", "proof_hash", "data_commitment", "tx_hash")


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
              "score", "train_loss", "update_hash", "proof_hash", "data_commitment", "tx_hash", "prove_seconds",
              "verify_seconds", "proof_bytes", "dp_epsilon")
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
        self.summary["initial_eval_loss"] = server_eval_loss
        self.metrics["initial"] = {"server_eval_loss": server_eval_loss, **extra}
        self.console.print(f"[bold]round 0[/] server eval loss {server_eval_loss:.4f} (initial global model)")
        self.flush()

    def add_round(self, rlog: RoundLog, server_eval_loss: float, new_global_hash: str, seconds: dict,
                  **extra_metrics) -> None:
        nodes = [_node_entry(o) for o in sorted(rlog.outcomes, key=lambda o: o.node_id)]
        entry = {"round": rlog.round, "global_hash": rlog.global_hash, "new_global_hash": new_global_hash,
                 "server_eval_loss": server_eval_loss, "kept_global": rlog.kept_global, "note": rlog.note,
                 "no_reply": list(rlog.no_reply), "validation_loss": rlog.validation_loss, "krum": rlog.krum,
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
        for col in ("node", "address", "status", "train", "proof loss", "score", "update", "tx"):
            table.add_column(col, no_wrap=True)
        for n in entry["nodes"]:
            losses = f"{n['loss_before']:.3f}→{n['loss_after']:.3f}" if n["loss_before"] is not None else "-"
            status = n["status"] if n["status"] in ("SELECTED", "NOT_SELECTED") else f"[red]{n['status']}[/]"
            table.add_row(_short(str(n["node_id"])), _short(n["address"]), status,
                          f"{n['train_loss']:.4f}" if n["train_loss"] is not None else "-", losses,
                          f"{n['score']:+.4f}" if n.get("score") is not None else "-",
                          _short(n["update_hash"]), _short(n["tx_hash"]))
        if entry.get("no_reply"):
            table.caption = "no reply within the round's timeout: " + ", ".join(map(str, entry["no_reply"]))
        return table

    def on_chain(self, op, tx_hash: str | None) -> None:
        """A journalled chain operation landed: note its transaction (records may land after their round)."""
        key = (op.round, op.payload["node_id"]) if op.kind in ("record", "reject") else (op.round, op.kind)
        with self._lock:
            self._pending_tx[key] = tx_hash
            if op.payload.get("verdict") is not None:  # a held-out reply the chain has now judged
                self._verdicts[key] = op.payload["verdict"]
            self._apply_tx()
            self._write()

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

    def _write(self) -> None:
        _write_atomic(self.dir / "summary.json", json.dumps(self.summary, indent=2, default=str))
        _write_atomic(self.dir / "metrics.json", json.dumps(self.metrics, indent=2, default=str))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for entry in self.summary["rounds"]:
            for n in entry["nodes"]:
                writer.writerow({"round": entry["round"], **n})
        _write_atomic(self.dir / "contributions.csv", buf.getvalue())
        if self.metrics["rounds"]:
            self._plot()

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rounds = self.metrics["rounds"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        nodes = sorted({k for r in rounds for k in r["client_train_loss"]})
        for node in nodes:
            xs = [r["round"] for r in rounds if node in r["client_train_loss"]]
            axes[0].plot(xs, [r["client_train_loss"][node] for r in rounds if node in r["client_train_loss"]],
                         marker="o", label=f"node {node}")
        axes[0].set(title="client train loss", xlabel="round", ylabel="loss")
        if nodes:
            axes[0].legend(fontsize=7)
        xs = [0] + [r["round"] for r in rounds]
        ys = [self.metrics["initial"].get("server_eval_loss")] + [r["server_eval_loss"] for r in rounds]
        axes[1].plot(xs, ys, marker="o", color="black")
        axes[1].set(title="server eval loss (held-out)", xlabel="round", ylabel="loss")
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.dir / "losses.png", dpi=100)
        plt.close(fig)
        success = [r for r in rounds if "success_rate" in r]
        if success:
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.plot([r["round"] for r in success], [r["success_rate"] for r in success], marker="o")
            ax.set(title="closed-loop success rate", xlabel="round", ylabel="success", ylim=(-0.05, 1.05))
            fig.savefig(self.dir / "success.png", dpi=100)
            plt.close(fig)
