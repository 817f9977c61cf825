"""``zk0agg status``: what the aggregator runs right now, asked of the things themselves.

The facts ``zk0agg start`` wrote (``<state-dir>/federation.json``) say where to look; then: is the ``zk0agg start``
process alive, does the SuperLink answer, which runs it has and in which state (Flower's Control API, what ``flwr
ls`` asks), which SuperNodes are connected, and for each run that is going: its round (its ``summary.json``), the
chain operations its journal has not sent yet, the chain and the verifier service's health.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from node.supernode import parse_address

ACTIVE = ("pending", "starting", "running")


@dataclass
class RunState:
    run_id: int
    status: str  # Flower's status, with the sub-status of a finished run: "running", "finished:completed"
    fab_hash: str
    out_dir: str
    rounds: int | None
    rounds_done: int | None = None
    pending_chain_ops: int | None = None
    failed_chain_ops: int | None = None

    @property
    def active(self) -> bool:
        return self.status.split(":")[0] in ACTIVE


@dataclass
class AggregatorStatus:
    state_file: Path
    started: bool = False  # a federation.json exists
    process_alive: bool | None = None
    pid: int | None = None
    superlink: str | None = None
    superlink_up: bool = False
    superlink_error: str = ""
    runs: list[RunState] = field(default_factory=list)
    nodes_online: list[int] = field(default_factory=list)
    nodes_known: int = 0
    chain: str = ""  # "up (block N)" / the error
    verifier: str = ""
    logs: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.superlink_up

    @property
    def active_runs(self) -> list[RunState]:
        return [r for r in self.runs if r.active]


def port_open(address: str, timeout: float = 2.0) -> bool:
    host, port = parse_address(address)
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_progress(out_dir: str) -> tuple[int | None, int | None, int | None]:
    """Rounds finished (summary.json), chain operations pending and failed (the run's journal), where readable."""
    out = Path(out_dir)
    done = pending = failed = None
    try:
        done = len(json.loads((out / "summary.json").read_text()).get("rounds", []))
    except (OSError, json.JSONDecodeError):
        pass
    journal = out / "chain-journal.sqlite"
    if journal.exists():
        try:  # read-only: the running aggregator owns the journal
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=2.0) as db:
                counts = dict(db.execute("SELECT state, COUNT(*) FROM ops GROUP BY state").fetchall())
            pending, failed = counts.get("pending", 0), counts.get("failed", 0)
        except sqlite3.Error:
            pass
    return done, pending, failed


def chain_health(rpc: str | None) -> str:
    if not rpc:
        return "none configured (unverified runs only)"
    from contracts.endpoints import redact_url
    from contracts.local_chain import rpc_request

    try:
        return f"up at {redact_url(rpc)}, block {int(rpc_request(rpc, 'eth_blockNumber', timeout=3.0), 16)}"
    except (OSError, ValueError, KeyError, urllib.error.URLError) as err:
        return f"DOWN at {redact_url(rpc)}: {err}"


def verifier_health(url: str | None) -> str:
    if not url:
        return "in the ServerApp process (no verifier service)"
    if "," in url:  # several services behind the aggregator
        return "; ".join(verifier_health(u.strip()) for u in url.split(",") if u.strip())
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=3.0) as response:
            health = json.loads(response.read())
        return (f"{'up' if health.get('ok') else 'NOT READY'} at {url}: {health.get('circuits')} circuit(s), "
                f"{health.get('workers')} worker(s)")
    except (OSError, ValueError, urllib.error.URLError) as err:
        return f"DOWN at {url}: {err}"


def aggregator_status(state_dir: str | Path) -> AggregatorStatus:
    from aggregator.tools.deploy import read_state

    state_file = Path(state_dir).expanduser() / "federation.json"
    status = AggregatorStatus(state_file=state_file)
    state = read_state(state_file)
    if not state:
        return status
    status.started, status.pid, status.superlink = True, state.get("pid"), state.get("superlink")
    status.process_alive = pid_alive(status.pid)
    status.logs = [str(p) for p in sorted(state_file.parent.glob("*.log"))]
    status.chain = chain_health(state.get("chain_rpc")) + (f", registry {state['registry']}"
                                                           if state.get("registry") else "")
    status.verifier = verifier_health(state.get("verifier_url"))
    if not status.superlink or not port_open(status.superlink):
        status.superlink_error = "not reachable"
        return status
    try:
        _ask_superlink(status, state)
    except Exception as err:  # noqa: BLE001 - Flower's client raises its own types; the operator needs the line
        status.superlink_error = f"reachable, but its Control API did not answer: {err}"
    return status


def _operator_run(run_id: int, state: dict) -> dict:
    """Where a run writes and its rounds: the operator's files say (aggregator.operator), never the run config; {}
    for a run the operator did not submit (its ServerApp refuses it) or an unreadable operator file."""
    from aggregator.operator import OPERATOR_FILE_ENV, operator_settings

    if not state.get("operator_file"):
        return {}
    try:
        return operator_settings(run_id, {OPERATOR_FILE_ENV: state["operator_file"]}, wait=0)
    except Exception:  # status still answers, without the run's progress
        return {}


def _ask_superlink(status: AggregatorStatus, state: dict) -> None:
    from flwr.common.serde import run_from_proto
    from flwr.proto.control_pb2 import ListNodesRequest, ListRunsRequest

    from aggregator.tools.deploy import control_client

    ca = state.get("root_certificates")
    client = control_client(status.superlink, bool(state.get("insecure")) and not ca, Path(ca) if ca else None)
    try:
        runs = [run_from_proto(p) for p in client.ListRuns(ListRunsRequest()).run_dict.values()]
        nodes = list(client.ListNodes(ListNodesRequest()).nodes_info)
    finally:
        client.close()
    status.superlink_up = True
    status.nodes_known = len(nodes)
    status.nodes_online = sorted(n.node_id for n in nodes if n.status == "online")
    for run in sorted(runs, key=lambda r: r.run_id):
        text = run.status.status + (f":{run.status.sub_status}" if run.status.sub_status else "")
        settings = _operator_run(run.run_id, state)
        rounds = settings.get("rounds")
        state_ = RunState(run.run_id, text, run.fab_hash, str(settings.get("out_dir", "")),
                          int(rounds) if rounds is not None else None)
        if state_.out_dir:
            state_.rounds_done, state_.pending_chain_ops, state_.failed_chain_ops = run_progress(state_.out_dir)
        status.runs.append(state_)
