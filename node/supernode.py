"""``zk0node start``: a real Flower SuperNode that runs only the pinned zk0 app, with this node's wallet and data.

Flower's ``flower-supernode`` connects to the aggregator's SuperLink and starts one ClientApp process per message
(``flower-superexec`` then ``flwr-clientapp``, both looked up on ``PATH``, both inheriting the SuperNode's
environment). So:

- the ClientApp's setup (dataset, wallet, SRS, cache) goes in the SuperNode's node-config, written to a TOML file
  (paths may hold spaces or quotes that Flower's ``key=value`` parser would split);
- the wallet password goes in the SuperNode's environment (``ZK0_WALLET_PASSWORD``), never on a command line;
- ``PATH`` starts with a private folder whose ``flwr-clientapp`` is the app guard (``node.app_guard``), then the
  folder of this Python's scripts (so Flower's own commands are found even when the venv is not activated);
- a warm ClientApp host (``node.app_guard``'s ``host``) runs beside the SuperNode: the guard's launcher hands each
  task to it, and it forks the task's process with torch, LeRobot and EZKL already imported, instead of a fresh
  Python importing them per message (``--cold-clientapp`` turns it off);
- ``zk0node start`` then becomes ``node.supervise``, the parent of both, which stops and reaps them and everything
  they started however it ends: a SuperNode that gives up connecting must not leave a 1 GB host behind (issue 34).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from node.app_guard import HASHES_ENV, HOST_ENV
from node.errors import UserError
from node.supervise import exec_supervisor

log = logging.getLogger(__name__)

DEFAULT_RUNTIME_PORT = 9094  # Flower's default for the SuperNode's local Runtime API (ClientApp processes)
SUPEREXEC_POLL = "0.2"  # seconds between the SuperNode's SuperExec looks for a new task (Flower's default: 1)
GUARD = Path(__file__).resolve().parent / "app_guard.py"
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def parse_address(value: str, what: str = "--superlink") -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) → (host, port); a one-line error otherwise."""
    match = _ADDRESS.match(value.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise UserError(f"bad {what} address {value!r}: expected HOST:PORT, e.g. 203.0.113.7:9092")
    return match.group(1), int(match.group(2))


@dataclass
class SuperNodeOptions:
    """Everything ``flower-supernode`` needs for one zk0 node (validated by ``zk0node start`` before use)."""

    superlink: str
    dataset: str
    wallet: Path
    app_hashes: list[str]
    state_dir: Path
    srs: str = "dev"
    cache_dir: Path = Path(".zk0/fixtures")
    device: str = "cpu"
    insecure: bool = False
    root_certificates: Path | None = None
    auth_key: Path | None = None
    runtime_port: int = DEFAULT_RUNTIME_PORT
    max_wait_time: float | None = None  # seconds to keep retrying an unreachable SuperLink (None: forever)
    extra_node_config: dict = field(default_factory=dict)
    warm_clientapp: bool = True  # a warm host forks each ClientApp process (node.app_guard); False: Flower's own way

    def __post_init__(self) -> None:
        parse_address(self.superlink)
        if not self.app_hashes:
            raise UserError("pin the app this node may run: --app-hash HASH (zk0node app-hash DIR prints it)")
        if self.insecure and (self.root_certificates or self.auth_key):
            raise UserError("--insecure cannot be combined with --root-certificates or --auth-key")
        if not self.insecure and self.root_certificates is None:
            raise UserError("give the federation's CA certificate (--root-certificates CA.pem), or --insecure for "
                            "a SuperLink on this machine (plain text: development only)")
        for flag, path in (("--root-certificates", self.root_certificates), ("--auth-key", self.auth_key)):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{flag}: no file at {path}")
        if self.srs != "dev" and not Path(self.srs).is_file():
            raise UserError(f"--srs: no SRS file at {self.srs} (use the file the federation publishes, or 'dev')")
        if not 0 < self.runtime_port < 65536:
            raise UserError(f"bad --runtime-port {self.runtime_port}")

    def node_config(self) -> dict:
        """What ``node.client_app.NodeSetup.from_node_config`` reads."""
        return {"dataset": self.dataset, "wallet": str(Path(self.wallet).expanduser().resolve()),
                "srs": self.srs if self.srs == "dev" else str(Path(self.srs).resolve()),
                "cache-dir": str(Path(self.cache_dir).expanduser().resolve()), "device": self.device,
                **self.extra_node_config}

    def prepare(self) -> None:
        """Write the node-config file and the guard's ``flwr-clientapp`` launcher under ``state_dir``."""
        import tomli_w

        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.node_config_path.write_text(tomli_w.dumps(self.node_config()))
        install_guard(self.state_dir / "bin", "clientapp")

    @property
    def node_config_path(self) -> Path:
        return self.state_dir / "node-config.toml"  # Flower reads a lone *.toml value as a file

    @property
    def host_socket(self) -> Path | None:
        """The warm ClientApp host's Unix socket; None when off or when the path is too long for a socket."""
        path = self.state_dir.expanduser().resolve() / "clientapp-host.sock"
        return path if self.warm_clientapp and len(str(path)) < 100 else None

    def host_command(self) -> list[str] | None:
        """The warm ClientApp host's command line; None when there is none."""
        if self.host_socket is None:
            return None
        return [sys.executable, "-P", str(GUARD), "host", str(self.host_socket)]

    def supervise(self, env: dict, log_file: Path | None = None, log_start: int = 0, tee: dict | None = None
                  ) -> NoReturn:
        """Become ``node.supervise`` (same pid): it runs the SuperNode and the warm host until the SuperNode stops,
        passes signals on, and stops and reaps every process they started before it exits (0, or one line saying
        why and 2). ``tee``: the log copier to end last (``node.logs.Tee.hand_over``)."""
        spec = {"node": self.command(), "host": self.host_command(), "superlink": self.superlink,
                "max_wait_time": self.max_wait_time, "log": None if log_file is None else str(log_file),
                "log_start": log_start, "tee": tee}
        exec_supervisor(spec, env)

    def command(self) -> list[str]:
        cmd = [flower_script("flower-supernode"), "--superlink", self.superlink,
               "--node-config", str(self.node_config_path), "--isolation", "subprocess",
               "--host", "127.0.0.1", "--port", str(self.runtime_port)]
        if self.insecure:
            cmd.append("--insecure")
        else:
            cmd += ["--root-certificates", str(Path(self.root_certificates).resolve())]
        if self.auth_key is not None:
            cmd += ["--auth-supernode-private-key", str(Path(self.auth_key).resolve())]
        if self.max_wait_time is not None:
            cmd += ["--max-wait-time", str(self.max_wait_time)]
        return cmd

    def environment(self, password: str, base: dict | None = None) -> dict:
        """The SuperNode's environment: guard first on PATH, pinned hashes, the wallet password."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.state_dir / "bin"), scripts_dir(), env.get("PATH", "")])
        env[HASHES_ENV] = ",".join(self.app_hashes)
        env["ZK0_WALLET_PASSWORD"] = password
        env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", SUPEREXEC_POLL)
        env.pop(HOST_ENV, None)
        if self.host_socket is not None:
            env[HOST_ENV] = str(self.host_socket)
        return env


def install_guard(bin_dir: Path, role: str) -> None:
    """``bin_dir/flwr-<role>`` (clientapp or serverapp): the app guard, to put first on a SuperNode's or
    SuperLink's PATH. ``-P`` keeps the guard's own folder (``node/``) off ``sys.path``: nothing of zk0 loads
    before the bundle is checked."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / f"flwr-{role}"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -P "{GUARD}" {role} "$@"\n')
    launcher.chmod(0o755)


def scripts_dir() -> str:
    """The folder of this Python's console scripts (``.venv/bin``): Flower's commands live there."""
    return str(Path(sys.executable).parent)


def flower_script(name: str) -> str:
    path = Path(scripts_dir()) / name
    if not path.exists():
        raise UserError(f"{name} not found next to {sys.executable}: install zk0 with its dependencies (flwr)")
    return str(path)
