"""``zk0node status``: is this machine's SuperNode up, and what did its operator pin it to.

``zk0node start`` writes ``<state-dir>/supernode.json`` just before it becomes the SuperNode (same pid): the
SuperLink, the pinned app bundle hashes, the wallet address, the dataset and the log file. ``status`` reads it
and asks the things themselves: is that process alive and a SuperNode, does the SuperLink answer from here, does
the SuperNode's local Runtime API listen.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from node.errors import UserError
from node.supernode import parse_address

STATE_FILE = "supernode.json"


def write_node_state(state_dir: Path, facts: dict) -> Path:
    path = Path(state_dir) / STATE_FILE
    path.write_text(json.dumps({**facts, "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, indent=2) + "\n")
    return path


def _listening(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class NodeStatus:
    state_file: Path
    facts: dict
    alive: bool = False
    superlink_reachable: bool = False
    runtime_listening: bool = False

    @property
    def started(self) -> bool:
        return bool(self.facts)


def _is_supernode(pid: int | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and any("flower-supernode" in part for part in proc.cmdline())
    except psutil.Error:
        return False


def node_status(state_dir: str | Path) -> NodeStatus:
    path = Path(state_dir).expanduser() / STATE_FILE
    try:
        facts = json.loads(path.read_text())
    except FileNotFoundError:
        return NodeStatus(path, {})
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    status = NodeStatus(path, facts, alive=_is_supernode(facts.get("pid")))
    if status.alive:
        status.superlink_reachable = _listening(*parse_address(facts["superlink"]))
        status.runtime_listening = _listening("127.0.0.1", int(facts.get("runtime_port", 0)))
    return status
