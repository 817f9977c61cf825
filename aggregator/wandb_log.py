"""Weights & Biases logging of a run, aggregator side: one W&B run per federated run, one history row per round.

Opt-in (``zk0agg run/demo --wandb``, on by default when ``WANDB_API_KEY`` is set). With no key or no network the
run is written in W&B's offline mode under ``<out>/wandb/offline-run-*`` (``wandb sync <that folder>`` uploads it
later), so a federation never waits on W&B, and a W&B failure never stops a round: it is logged and skipped.

Conventions from LeRobot's ``WandBLogger``: ``WANDB_SILENT``, the run folder inside the output folder, the run's
config as W&B config, ``eval/`` and ``train/`` key prefixes. The x-axis is the federated ``round`` (a custom step
metric), so facts that become known after their round (the gas of transactions that land later) still chart
against their own round.

Besides the numbers, each round logs what an operator looks at (as LeRobot's trainer logs ``eval/video`` and its
checkpoints): the closed-loop rollout videos of ``<out>/evaluate/round_<r>/`` (``eval/video/seed_<s>``), the run's
charts (``charts/losses``, ``charts/success``) and a table of the round's replies (``replies``: node, wallet,
status, reason, score, losses, transaction). At the end: the table of every reply with the transactions that
landed since (``replies_final``), the last round's checkpoint as a ``model`` artifact (the LeRobot
``save_pretrained`` folder), and, offline, the ``wandb sync`` command that uploads the run, printed last.

``read_offline_run`` reads a run folder back with W&B's own record format (``wandb.proto``): what ``wandb sync``
would upload. The tests use it; an operator can use it to look at a run before syncing it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import statistics
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from aggregator.protocol.gate import REASONS

log = logging.getLogger(__name__)

PROJECT = "zk0"
ACCEPTED = ("SELECTED", "NOT_SELECTED")
STATUSES = (*ACCEPTED, *REASONS)  # every status a reply can end with: the gate's reasons are its rejections
REPLY_COLUMNS = ("round", "node", "wallet", "claimed wallet", "status", "reason", "detail", "score", "loss before",
                 "loss after", "train loss", "update hash", "tx")


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


def reply_rows(entry: dict) -> list[list]:
    """The round's replies as rows of ``REPLY_COLUMNS`` (the ``replies`` table)."""
    def number(value):
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return [[entry["round"], str(n["node_id"]), n.get("address"), n.get("claimed_address"), n["status"],
             n.get("reason"), n.get("detail") or "", number(n.get("score")), number(n.get("loss_before")),
             number(n.get("loss_after")), number(n.get("train_loss")), n.get("update_hash"), n.get("tx_hash")]
            for n in entry.get("nodes", [])]


def round_media(out_dir: Path, round_: int) -> dict[str, tuple[str, Path]]:
    """What a round left on disk for W&B to show: its rollout videos and the run's charts, as of this round.

    Key → (kind, path): ``eval/video/seed_<s>`` → ("video", mp4), ``charts/<name>`` → ("image", png)."""
    out_dir = Path(out_dir)
    media = {f"eval/video/{p.stem}": ("video", p) for p in sorted((out_dir / "evaluate" / f"round_{round_}").glob(
        "*.mp4")) if p.stat().st_size > 0}
    media.update({f"charts/{name}": ("image", out_dir / f"{name}.png") for name in ("losses", "success")
                  if (out_dir / f"{name}.png").is_file()})
    return media


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
    out_dir: Path | None = None  # the run's outputs: videos, charts and checkpoints are read from there
    name: str = ""

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
                    " (the command that uploads it is printed when the run ends)" if mode == "offline" else "")
        return cls(run, mode, Path(out_dir), run_id)

    def log_initial(self, server_eval_loss: float) -> None:
        """Round 0: the initial global model's held-out loss, where the loss chart starts."""
        self._log({"round": 0, "eval/server_loss": server_eval_loss})

    def log_round(self, entry: dict, seconds: dict | None = None) -> None:
        """The round's numbers, its rollout videos, the charts and the table of its replies, in one history row."""
        try:
            metrics = round_metrics(entry, seconds)
        except Exception as err:  # noqa: BLE001 - a bad value must not stop the round
            log.warning("W&B: round %s not logged: %s", entry.get("round"), err)
            return
        try:
            metrics.update(self._media(entry))
        except Exception as err:  # noqa: BLE001 - a video or chart W&B cannot read: the numbers still go
            log.warning("W&B: round %s logged without its videos, charts and table: %s", entry.get("round"), err)
        self._log(metrics)

    def _media(self, entry: dict) -> dict:
        import wandb

        media: dict = {"replies": wandb.Table(columns=list(REPLY_COLUMNS), data=reply_rows(entry))}
        if self.out_dir is not None:
            for key, (kind, path) in round_media(self.out_dir, entry["round"]).items():
                media[key] = (wandb.Video(str(path), format="mp4") if kind == "video" else
                              wandb.Image(str(path), caption=f"after round {entry['round']}"))
        return media

    def log_checkpoint(self, summary: dict) -> None:
        """The last round's checkpoint (``<out>/checkpoints/round_<r>``, LeRobot's ``save_pretrained`` folder) as a
        ``model`` artifact, aliased ``latest`` and ``round_<r>``, with the round's global hash and chain facts."""
        rounds = summary.get("rounds") or []
        if self.out_dir is None or not rounds:
            return
        last = rounds[-1]
        folder = self.out_dir / "checkpoints" / f"round_{last['round']}"
        if not (folder / "model.safetensors").is_file():
            log.warning("W&B: no checkpoint at %s: no model artifact", folder)
            return
        import wandb

        chain = summary.get("chain") or {}
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.name or summary.get('run_id') or 'zk0'}-round_{last['round']}")
        artifact = wandb.Artifact(name, type="model", description=f"zk0 global model after round {last['round']}",
                                  metadata={"round": last["round"], "global_hash": last.get("new_global_hash"),
                                            "close_tx_hash": last.get("close_tx_hash"),
                                            "server_eval_loss": last.get("server_eval_loss"),
                                            "success_rate": last.get("success_rate"),
                                            "chain_id": chain.get("chain_id"), "registry": chain.get("registry"),
                                            "run_id": chain.get("run_id")})
        artifact.add_dir(str(folder), policy="immutable")  # the round's folder is never rewritten: no copy
        self.run.log_artifact(artifact, aliases=["latest", f"round_{last['round']}"])

    def finish(self, summary: dict, gas_of=None) -> None:
        """Gas of the run's transactions against their rounds (when the chain answers), every reply with the
        transactions that landed since its round, the final checkpoint, final numbers, close; offline, the
        ``wandb sync`` command, last."""
        if gas_of is not None:
            try:
                for row in gas_by_round(summary, gas_of):
                    self._log(row)
            except Exception as err:  # noqa: BLE001 - the chain may be gone by now
                log.warning("W&B: no gas figures (%s)", err)
        rounds = summary.get("rounds") or []
        try:
            if rounds:
                import wandb

                rows = [row for entry in rounds for row in reply_rows(entry)]
                self._log({"round": rounds[-1]["round"],
                           "replies_final": wandb.Table(columns=list(REPLY_COLUMNS), data=rows)})
            self.log_checkpoint(summary)
        except Exception as err:  # noqa: BLE001
            log.warning("W&B: final table or checkpoint not logged: %s", err)
        try:
            for key in ("initial_eval_loss", "final_eval_loss"):
                if summary.get(key) is not None:
                    self.run.summary[f"eval/{key}"] = summary[key]
            if summary.get("chain"):
                self.run.summary["chain/pending_operations"] = summary["chain"].get("pending_operations")
            run_dir = Path(self.run.dir).parent
            self.run.finish()
        except Exception as err:  # noqa: BLE001
            log.warning("W&B: finishing the run failed: %s", err)
            return
        if self.mode == "offline":
            log.warning("W&B run saved offline in %s; upload it with: wandb sync %s", run_dir, run_dir)

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
    artifacts: list[dict] = field(default_factory=list)  # name, type, aliases, metadata, files (path → local path)
    finished: bool = False  # the run's exit record is written: nothing more will come

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


def read_offline_run(run_dir: Path, wait: float = 0.0) -> OfflineRun:
    """Parse ``run_dir/run-<id>.wandb`` with W&B's protobuf ``Record``: config, history rows, summary, artifacts.

    W&B's service writes the file after ``run.finish()`` has returned: ``wait`` seconds at most for its exit record
    (a run read right after it finished)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            run = _read_offline_run(run_dir)
        except ValueError:  # a record half-written as it is read
            if time.monotonic() >= deadline:
                raise
            run = None
        if run is not None and (run.finished or time.monotonic() >= deadline):
            return run
        time.sleep(0.25)


def _read_offline_run(run_dir: Path) -> OfflineRun:
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
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append({"name": a.name, "type": a.type, "aliases": list(a.aliases),
                                  "metadata": json.loads(a.metadata) if a.metadata else {},
                                  "files": {e.path: e.local_path for e in a.manifest.contents}})
        elif kind == "exit":
            run.finished = True
    return run
