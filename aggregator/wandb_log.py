"""Weights & Biases logging of a run, aggregator side: one W&B run per federated run, one history row per round.

Opt-in (``zk0agg run/demo --wandb``, on by default when ``WANDB_API_KEY`` is set). With no key or no network the
run is written in W&B's offline mode under ``<out>/wandb/offline-run-*`` (``wandb sync <that folder>`` uploads it
later), so a federation never waits on W&B, and a W&B failure never stops a round: it is logged and skipped.

Conventions from LeRobot's ``WandBLogger``: ``WANDB_SILENT``, the run folder inside the output folder, the run's
config as W&B config, ``eval/`` and ``train/`` key prefixes. The x-axis is the federated ``round`` (a custom step
metric), so facts that become known after their round (the gas of transactions that land later) still chart
against their own round.

``read_offline_run`` reads a run folder back with W&B's own record format (``wandb.proto``): what ``wandb sync``
would upload. The tests use it; an operator can use it to look at a run before syncing it.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PROJECT = "zk0"
ACCEPTED = ("SELECTED", "NOT_SELECTED")
STATUSES = (*ACCEPTED, "MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE", "INTEGRITY", "BAD_PROOF", "UNBOUND",
            "NO_IMPROVEMENT")


def wandb_default() -> bool:
    """``--wandb`` is on by default when the operator has a W&B key."""
    return bool(os.environ.get("WANDB_API_KEY", "").strip())


def wandb_mode(environ: dict | None = None, timeout: float = 3.0) -> str:
    """``WANDB_MODE`` when set; else ``online`` with a key and a reachable W&B server, ``offline`` otherwise."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if not environ.get("WANDB_API_KEY", "").strip():
        return "offline"
    url = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return "online"
    except OSError:
        log.warning("W&B server %s unreachable: logging offline (wandb sync later)", url.hostname)
        return "offline"


# ----------------------------------------------------------------------------------------------- metrics


def _stats(prefix: str, values: Iterable[float | None]) -> dict[str, float]:
    values = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]  # node-reported
    if not values:
        return {}
    return {f"{prefix}_mean": statistics.fmean(values), f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def round_metrics(entry: dict, seconds: dict | None = None) -> dict[str, float | int]:
    """One round of ``summary.json`` (``RunOutputs.add_round``'s entry) as flat W&B metrics.

    Node statuses are counted by status (a rejection's status is its reason), every known status with its count,
    zeros included, so each has a continuous chart. Per-node keys use the wallet address (or the reply's key).
    """
    nodes = entry.get("nodes", [])
    accepted = [n for n in nodes if n["status"] in ACCEPTED]
    m: dict[str, float | int] = {"round": entry["round"], "eval/server_loss": entry["server_eval_loss"]}
    for key in ("success_rate", "mean_episode_length"):
        if entry.get(key) is not None:
            m[f"eval/{key}"] = entry[key]
    m["nodes/replies"] = len(nodes)
    m["nodes/no_reply"] = len(entry.get("no_reply", []))
    for status in sorted({*STATUSES, *(n["status"] for n in nodes)}):
        m[f"nodes/status/{status}"] = sum(n["status"] == status for n in nodes)
    m["krum/verified"] = len(accepted)
    m["krum/selected"] = sum(n["status"] == "SELECTED" for n in nodes)
    m["krum/kept_global"] = int(bool(entry.get("kept_global")))
    m.update(_stats("train/loss", (n.get("train_loss") for n in nodes)))
    m.update(_stats("proof/loss_before", (n.get("loss_before") for n in accepted)))
    m.update(_stats("proof/loss_after", (n.get("loss_after") for n in accepted)))
    m.update(_stats("proof/prove_seconds", (n.get("prove_seconds") for n in nodes)))
    m.update(_stats("proof/verify_seconds", (n.get("verify_seconds") for n in nodes)))
    m.update(_stats("proof/bytes", (n.get("proof_bytes") for n in nodes)))
    m.update(_stats("score", (n.get("score") for n in nodes)))
    for n in nodes:
        who = n.get("address") or n.get("claimed_address") or f"node-{n['node_id']}"
        m[f"node/{who}/selected"] = int(n["status"] == "SELECTED")
        for key in ("train_loss", "loss_before", "loss_after", "score"):
            if isinstance(n.get(key), int | float):
                m[f"node/{who}/{key}"] = n[key]
    for key, value in (seconds or {}).items():
        m[f"time/{key}_seconds"] = value
    return m


def gas_by_round(summary: dict, gas_of) -> list[dict[str, int]]:
    """Per round: the gas of its chain transactions (``gas_of(tx_hash)``), by kind, for those that landed."""
    rows = []
    for entry in summary.get("rounds", []):
        kinds = {"open": [entry.get("open_tx_hash")], "close": [entry.get("close_tx_hash")],
                 "records": [n.get("tx_hash") for n in entry.get("nodes", [])]}
        row = {"round": entry["round"]}
        for kind, txs in kinds.items():
            gas = [gas_of(tx) for tx in txs if tx]
            if gas:
                row[f"chain/gas_{kind}"] = sum(gas)
        if len(row) > 1:
            row["chain/gas_total"] = sum(v for k, v in row.items() if k.startswith("chain/"))
            row["chain/transactions"] = sum(len([t for t in txs if t]) for txs in kinds.values())
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- the run


@dataclass
class WandbRun:
    """A W&B run for one federated run; every call is best-effort (a W&B failure is a warning, not a crash)."""

    run: object
    mode: str

    @classmethod
    def start(cls, out_dir: Path, run_id: str, config: dict, resume: bool = False,
              project: str | None = None) -> WandbRun | None:
        os.environ.setdefault("WANDB_SILENT", "true")
        mode = wandb_mode()
        try:
            import wandb

            previous = find_run_dir(out_dir) if resume else None
            run = wandb.init(project=project or os.environ.get("WANDB_PROJECT") or PROJECT, name=run_id,
                             dir=str(out_dir), config=config, job_type="federation", mode=mode,
                             tags=[f"model:{config.get('model', '')}", "verified" if config.get("verify") else
                                   "unverified", f"nodes:{config.get('min_nodes', '')}"],
                             id=previous.name.rsplit("-", 1)[-1] if previous else None,
                             resume="allow" if previous else None, save_code=False)
            run.define_metric("round")
            run.define_metric("*", step_metric="round")
        except Exception as err:  # noqa: BLE001 - W&B must never stop a federation
            log.warning("W&B logging off: wandb.init failed: %s", err)
            return None
        where = run.dir if mode == "offline" else run.get_url()
        log.warning("W&B %s run %s: %s%s", mode, run.id, where,
                    " (upload later: wandb sync " + str(Path(run.dir).parent) + ")" if mode == "offline" else "")
        return cls(run, mode)

    def log_initial(self, server_eval_loss: float) -> None:
        """Round 0: the initial global model's held-out loss, where the loss chart starts."""
        self._log({"round": 0, "eval/server_loss": server_eval_loss})

    def log_round(self, entry: dict, seconds: dict | None = None) -> None:
        try:
            metrics = round_metrics(entry, seconds)
        except Exception as err:  # noqa: BLE001 - a bad value must not stop the round
            log.warning("W&B: round %s not logged: %s", entry.get("round"), err)
            return
        self._log(metrics)

    def finish(self, summary: dict, gas_of=None) -> None:
        """Gas of the run's transactions against their rounds (when the chain answers), final numbers, close."""
        if gas_of is not None:
            try:
                for row in gas_by_round(summary, gas_of):
                    self._log(row)
            except Exception as err:  # noqa: BLE001 - the chain may be gone by now
                log.warning("W&B: no gas figures (%s)", err)
        try:
            for key in ("initial_eval_loss", "final_eval_loss"):
                if summary.get(key) is not None:
                    self.run.summary[f"eval/{key}"] = summary[key]
            if summary.get("chain"):
                self.run.summary["chain/pending_operations"] = summary["chain"].get("pending_operations")
            self.run.finish()
        except Exception as err:  # noqa: BLE001
            log.warning("W&B: finishing the run failed: %s", err)

    def _log(self, metrics: dict) -> None:
        try:
            self.run.log(metrics)
        except Exception as err:  # noqa: BLE001
            log.warning("W&B: logging round %s failed: %s", metrics.get("round"), err)


# ----------------------------------------------------------------------------------------------- reading back


@dataclass
class OfflineRun:
    """An offline W&B run as its ``.wandb`` file holds it."""

    run_id: str
    project: str
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one dict per wandb.log call, W&B's own keys included
    summary: dict = field(default_factory=dict)

    def by_round(self) -> dict[int, dict]:
        """History rows merged per ``round``: everything W&B charts at that round."""
        rounds: dict[int, dict] = {}
        for row in self.history:
            if "round" in row:
                rounds.setdefault(int(row["round"]), {}).update(row)
        return rounds


def find_run_dir(out_dir: Path) -> Path | None:
    """The newest W&B run folder under ``out_dir/wandb`` (offline or online), or None."""
    runs = sorted(Path(out_dir).glob("wandb/*run-*"), key=lambda p: p.name.split("-", 2)[-1])
    return next((p for p in reversed(runs) if p.is_dir() and list(p.glob("run-*.wandb"))), None)


_BLOCK, _HEADER = 32768, 7  # W&B's transaction log is LevelDB's log format with its own file header
_FULL, _LAST = 1, 4


def _records(data: bytes) -> Iterable[bytes]:
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError("not a W&B transaction log (.wandb)")
    pos, chunks = _HEADER, []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        if zlib.crc32(bytes([kind]) + chunk) != crc:
            raise ValueError(f"corrupt W&B record at byte {pos}")
        pos += _HEADER + length
        chunks.append(chunk)
        if kind in (_FULL, _LAST):
            yield b"".join(chunks)
            chunks = []


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Parse ``run_dir/run-<id>.wandb`` with W&B's protobuf ``Record``: config, history rows, summary."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    files = list(Path(run_dir).glob("run-*.wandb"))
    if len(files) != 1:
        raise ValueError(f"expected one run-*.wandb file in {run_dir}, found {len(files)}")

    def item_key(item) -> str:
        return item.key or "/".join(item.nested_key)

    run = OfflineRun(run_id="", project="")
    for raw in _records(files[0].read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project = record.run.run_id, record.run.project
            run.config.update({item_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({item_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run.history.append({item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({item_key(i): json.loads(i.value_json) for i in record.summary.update})
    return run
