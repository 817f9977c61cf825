"""Flower's deployment engine for zk0: the SuperLink, runs submitted to it, and a whole federation on loopback.

``zk0agg start`` runs ``flower-superlink`` (``SuperLinkOptions``); ``zk0agg run`` submits the zk0 app bundle with a
run config through Flower's Control API (``submit_run``) and follows the run's log to its end (``follow_run``).
``LoopbackFederation`` starts a SuperLink and N ``zk0node start`` processes on this machine (``zk0agg demo
--engine deployment``, the integration tests).

Secrets never travel in the run config: Flower sends the run config to every node. The ServerApp reads the
aggregator's chain key and the verifier token from its own environment, which ``flower-superlink`` passes on to
each ServerApp process it starts (``ZK0_AGGREGATOR_KEY``, ``ZK0_VERIFIER_TOKEN``; see ``aggregator.config``).
Endpoints, trust settings, paths and the settings that decide verdicts or rewards are the operator's too
(``aggregator.operator``): the SuperLink's ``operator.json`` and, per run, the file ``zk0agg run`` writes after
submitting (``submit_operator_run``), without which the ServerApp refuses the run; a run config naming one is refused.

flwr 1.41 serves the Fleet, Control and Runtime APIs on one port, and its Control API has no login without Flower's
enterprise authentication. ``SuperLinkOptions`` therefore runs ``flower-superlink`` through
``aggregator.tools.control_guard``, which answers Control API requests from loopback peers only (unless
``control_api_public``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aggregator.operator import OPERATOR_FILE_ENV, OPERATOR_KEYS, SUPERLINK_LOG_ENV, write_operator_file
from node.app_guard import HASHES_ENV
from node.errors import UserError
from node.supernode import flower_script, install_guard, scripts_dir

log = logging.getLogger(__name__)

SUPERLINK_PORT = 9092  # one port in flwr 1.41: Fleet API (nodes), Control API (runs), Runtime API (ServerApp)


# ----------------------------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A process we started (its own session), its log file, and a clean stop of it and everything it started."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _tree(self) -> list:
        """The process and its descendants, by pid. Flower's helpers (``flower-superexec``, ServerApp and ClientApp
        processes) run in sessions of their own, so a process-group signal would miss them: the descendants are
        collected before the parent goes."""
        import psutil

        try:
            parent = psutil.Process(self.pid)
            return [*parent.children(recursive=True), parent]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the process and everything it started, at once: what a machine losing power looks like."""
        _signal(self._tree(), signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process and its descendants, then SIGKILL what is left."""
        import psutil

        procs = self._tree()
        _signal(procs, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        _signal(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=timeout)
        try:
            self.popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        log.info("%s (pid %d) stopped", self.name, self.pid)


def _signal(procs: list, sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def start_process(name: str, cmd: list[str], log_path: Path, env: dict | None = None,
                  cwd: Path | None = None) -> ManagedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                 cwd=cwd, start_new_session=True)
    log.info("%s started (pid %d), log %s", name, popen.pid, log_path)
    return ManagedProcess(name, popen, log_path)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, process: ManagedProcess, timeout: float = 60.0) -> None:
    """Until ``host:port`` accepts connections; a one-line error with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise UserError(f"{process.name} exited at start (code {process.popen.returncode}): "
                            f"{process.log_tail(600).strip() or 'no output'}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise UserError(f"{process.name} did not listen on {host}:{port} within {timeout:.0f} s (log {process.log_path})")


# ----------------------------------------------------------------------------------------------- SuperLink


@dataclass
class SuperLinkOptions:
    """``flower-superlink`` for zk0: pinned ServerApp bundle(s), no runtime ``uv sync``, state on disk."""

    state_dir: Path
    app_hashes: list[str]
    host: str = "127.0.0.1"
    port: int = SUPERLINK_PORT
    insecure: bool = False
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_ca_certfile: Path | None = None
    supernode_auth: bool = False
    control_api_public: bool = False  # False: the Control API answers loopback peers only (tools/control_guard.py)
    database: str | None = None  # None: state_dir/superlink.db (runs and registered node keys survive restarts)
    operator: dict = field(default_factory=dict)  # the operator's settings of every run (aggregator.operator)

    def __post_init__(self) -> None:
        tls = (self.ssl_certfile, self.ssl_keyfile, self.ssl_ca_certfile)
        if self.insecure and any(tls):
            raise UserError("--insecure cannot be combined with TLS certificates")
        if not self.insecure and not all(tls):
            raise UserError("TLS needs --ssl-certfile, --ssl-keyfile and --ssl-ca-certfile (or --insecure for "
                            "loopback development)")
        for path in filter(None, tls):
            if not Path(path).is_file():
                raise UserError(f"no certificate file at {path}")
        if self.insecure and self.supernode_auth:
            raise UserError("SuperNode authentication needs TLS: give the certificates instead of --insecure")
        if not self.app_hashes:
            raise UserError("pin the app the SuperLink may run (--app-hash)")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def operator_file(self) -> Path:
        return self.state_dir / "operator.json"

    def command(self) -> list[str]:
        superlink = ([flower_script("flower-superlink")] if self.control_api_public else
                     [sys.executable, "-m", "aggregator.tools.control_guard"])
        cmd = [*superlink, "--host", self.host, "--port", str(self.port),
               "--disable-runtime-dependency-installation", "--isolation", "subprocess",
               "--database", self.database or str(self.state_dir / "superlink.db")]
        if self.insecure:
            cmd.append("--insecure")
        else:
            cmd += ["--ssl-certfile", str(Path(self.ssl_certfile).resolve()),
                    "--ssl-keyfile", str(Path(self.ssl_keyfile).resolve()),
                    "--ssl-ca-certfile", str(Path(self.ssl_ca_certfile).resolve())]
        if self.supernode_auth:
            cmd.append("--enable-supernode-auth")
        return cmd

    def environment(self, secrets: dict[str, str], base: dict | None = None) -> dict:
        """The SuperLink's environment, which every ServerApp process inherits: guard first on PATH, secrets."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.state_dir / "bin"), scripts_dir(), env.get("PATH", "")])
        env[HASHES_ENV] = ",".join(self.app_hashes)
        env[OPERATOR_FILE_ENV] = str(self.operator_file.resolve())
        env.setdefault("COLUMNS", "160")  # the ServerApp's round tables are read in logs: wider than rich's 80
        env.update({k: v for k, v in secrets.items() if v})
        return env

    def start(self, secrets: dict[str, str], log_path: Path | None = None, env: dict | None = None,
              wait: float = 60.0) -> ManagedProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        install_guard(self.state_dir / "bin", "serverapp")
        write_operator_file(self.operator_file, self.operator)
        log_path = Path(log_path or self.state_dir / "superlink.log").resolve()
        environment = {**self.environment(secrets, env), SUPERLINK_LOG_ENV: str(log_path)}
        process = start_process("superlink", self.command(), log_path, env=environment, cwd=self.state_dir)
        try:
            wait_for_port("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host, self.port, process, wait)
        except BaseException:
            process.stop()
            raise
        return process


# ----------------------------------------------------------------------------------------------- runs


def control_client(address: str, insecure: bool, root_certificates: Path | None = None):
    """Flower's Control API client for the SuperLink at ``address`` (what ``flwr run`` uses)."""
    from flwr.cli.typing import SuperLinkConnection
    from flwr.cli.utils import init_http_client_from_connection

    connection = SuperLinkConnection(name="zk0", address=address, insecure=insecure,
                                     root_certificates=str(Path(root_certificates).resolve())
                                     if root_certificates else None)
    with contextlib.redirect_stdout(io.StringIO()):  # Flower's CLI prints "Using SuperLink: ..." on every client
        return init_http_client_from_connection(connection)


def app_run_config_keys(fab: bytes) -> set[str]:
    """The run-config keys the bundle declares (``[tool.flwr.app.config]``): Flower refuses any other."""
    from flwr.common.config import flatten_dict, get_fab_config

    return set(flatten_dict(get_fab_config(fab)["tool"]["flwr"]["app"].get("config", {})))


def run_config(fed, fab: bytes) -> dict:
    """``fed``'s learning settings as Flower run config (kebab-case): every field the app declares, and any other
    field that differs from its default (``submit_run`` then says the app lacks it). Secrets (by env) and the
    operator's settings (``operator_part``, by file: endpoints, paths, verdict rules) are left out."""
    from dataclasses import fields

    from aggregator.config import SECRET_ENV

    declared = app_run_config_keys(fab)
    out = {}
    for f in fields(fed):
        key, value = f.name.replace("_", "-"), getattr(fed, f.name)
        if f.name not in SECRET_ENV and f.name not in OPERATOR_KEYS and (key in declared or value != f.default):
            out[key] = value
    return out


def operator_part(fed) -> dict:
    """``fed``'s operator-only settings (``aggregator.operator.OPERATOR_KEYS``), for the operator's files: what the
    deployment demo and the tests hand ``submit_operator_run`` (``zk0agg run`` builds the same from its flags)."""
    return {name: getattr(fed, name) for name in OPERATOR_KEYS}


def submit_run(address: str, fab: bytes, run_config: dict, insecure: bool,
               root_certificates: Path | None = None) -> int:
    """Start a run of ``fab`` with ``run_config`` on the SuperLink; returns the run id (``flwr run``'s request)."""
    from flwr.common.serde import fab_to_proto, user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest
    from flwr.supercore.fab import Fab

    from node.trust import bundle_hash

    missing = sorted(set(run_config) - app_run_config_keys(fab))
    if missing:
        raise UserError(f"the app's pyproject.toml [tool.flwr.app.config] lacks {', '.join(missing)}: Flower "
                        "accepts only run-config keys the app declares")
    client = control_client(address, insecure, root_certificates)
    try:
        request = StartRunRequest(fab=fab_to_proto(Fab(bundle_hash(fab), fab, {})),
                                  override_config=user_config_to_proto(run_config))
        try:
            response = client.StartRun(request)
        except Exception as err:  # Flower's HTTP client raises its own error types for refusals and outages
            raise UserError(f"the SuperLink at {address} refused the run: {err}") from None
        if not response.HasField("run_id"):
            raise UserError(f"the SuperLink at {address} did not start the run")
        return response.run_id
    finally:
        client.close()


def submit_operator_run(address: str, fab: bytes, run_config: dict, operator_file: Path, settings: dict,
                        insecure: bool, root_certificates: Path | None = None) -> int:
    """``submit_run``, then this run's operator settings (``aggregator.operator``) where its ServerApp reads them:
    ``runs/<run id>.json`` beside the SuperLink's ``operator_file`` (on this, the aggregator's machine)."""
    from aggregator.operator import write_run_settings

    run_id = submit_run(address, fab, run_config, insecure, root_certificates)
    write_run_settings(operator_file, run_id, settings)
    return run_id


@dataclass
class RunResult:
    run_id: int
    status: str  # Flower's sub-status: completed, failed, stopped
    details: str = ""
    log_lines: list[str] = field(default_factory=list)


def follow_run(address: str, run_id: int, insecure: bool, root_certificates: Path | None = None,
               on_log: Callable[[str], None] | None = None, timeout: float = 3600.0,
               on_interrupt: Callable[[], None] | None = None) -> RunResult:
    """Stream the run's ServerApp log to ``on_log`` until the run finishes; its final status.

    Flower's log stream blocks for as long as the run lives, so it runs in a thread while this one asks for the
    run's status every two seconds and gives up after ``timeout``. A first Ctrl-C calls ``on_interrupt`` (if given:
    e.g. ask the run to stop) and goes on following; a second one ends the following.
    """
    from flwr.common.serde import run_from_proto
    from flwr.proto.control_pb2 import ListRunsRequest, StreamLogsRequest

    lines: list[str] = []
    stream_client = control_client(address, insecure, root_certificates)  # made here: it briefly swaps stdout

    def stream(client=stream_client) -> None:
        try:
            for res in client.StreamLogs(StreamLogsRequest(run_id=run_id, after_timestamp=0.0)):
                if res.log_output:
                    lines.append(res.log_output)
                    if on_log is not None:
                        on_log(res.log_output)
        except Exception as err:  # noqa: BLE001 - the stream ends with an error when the SuperLink goes away
            log.debug("log stream of run %d ended: %s", run_id, err)
        finally:
            client.close()

    streamer = threading.Thread(target=stream, name=f"zk0-run-{run_id}-log", daemon=True)
    streamer.start()
    client = control_client(address, insecure, root_certificates)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                runs = client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
                run = run_from_proto(runs[run_id]) if run_id in runs else None
                if run is not None and run.status.status == "finished":
                    streamer.join(timeout=10.0)  # the last lines
                    return RunResult(run_id, run.status.sub_status, run.status.details, lines)
                time.sleep(2.0)
            except KeyboardInterrupt:
                if on_interrupt is None:
                    raise
                on_interrupt()
                on_interrupt = None  # the next Ctrl-C ends the following
        raise UserError(f"run {run_id} did not finish within {timeout:.0f} s (zk0agg run --timeout)")
    finally:
        client.close()


def wait_nodes(address: str, count: int, supernodes: list[ManagedProcess], insecure: bool = True,
               root_certificates: Path | None = None, timeout: float = 120.0) -> None:
    """Until ``count`` SuperNodes are connected to the SuperLink at ``address`` (Flower's node list), or one of
    ``supernodes`` died."""
    from flwr.proto.control_pb2 import ListNodesRequest

    client = control_client(address, insecure, root_certificates)
    deadline, online = time.monotonic() + timeout, []
    try:
        while time.monotonic() < deadline:
            for node in supernodes:
                if not node.running():
                    raise UserError(f"{node.name} exited: {node.log_tail(800).strip()}")
            try:
                online = [n for n in client.ListNodes(ListNodesRequest()).nodes_info if n.status == "online"]
            except Exception as err:  # noqa: BLE001 - a node list is best-effort while processes start
                log.debug("node list not available yet: %s", err)
                online = []
            if len(online) >= count:
                return
            time.sleep(1.0)
    finally:
        client.close()
    raise UserError(f"only {len(online)} of {count} SuperNodes connected within {timeout:.0f} s")


# ----------------------------------------------------------------------------------------------- loopback


@dataclass
class LoopbackNode:
    dataset: str
    wallet: str
    app_hashes: list[str]
    password: str
    cache_dir: str
    srs: str = "dev"
    warm_clientapp: bool = True  # False: zk0node start --cold-clientapp (a fresh Python per message)


@dataclass
class LoopbackFederation:
    """A SuperLink and ``zk0node start`` SuperNodes on 127.0.0.1 (insecure): the deployment engine on one machine.

    Every process is started in its own session and stopped, with everything it started, by ``stop``.
    """

    work_dir: Path
    app_hashes: list[str]
    secrets: dict[str, str] = field(default_factory=dict)
    operator: dict = field(default_factory=dict)  # operator.json of the SuperLink (aggregator.operator)
    env: dict | None = None  # base environment of every process (default: this process's)
    superlink: ManagedProcess | None = None
    supernodes: list[ManagedProcess] = field(default_factory=list)
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def operator_file(self) -> Path:
        return self.work_dir / "superlink" / "operator.json"

    def start_superlink(self) -> None:
        for attempt in range(3):  # a free port can be taken before the SuperLink binds it
            self.port = free_port()
            options = SuperLinkOptions(self.work_dir / "superlink", self.app_hashes, port=self.port, insecure=True,
                                       database=":flwr-in-memory:", operator=self.operator)
            try:
                self.superlink = options.start(self.secrets, env=self.env)
                return
            except UserError:
                if attempt == 2:
                    raise

    def start_node(self, node: LoopbackNode, index: int) -> ManagedProcess:
        """``zk0node start`` as a node operator would run it (the password in the environment only)."""
        state = self.work_dir / f"node{index}"
        cmd = [sys.executable, "-m", "node.cli", "start", "--superlink", self.address, "--insecure",
               "--dataset", node.dataset, "--wallet", node.wallet, "--srs", node.srs,
               "--cache-dir", node.cache_dir, "--state-dir", str(state), "--runtime-port", str(free_port()),
               "--max-wait-time", "60"]
        for digest in node.app_hashes:
            cmd += ["--app-hash", digest]
        if not node.warm_clientapp:
            cmd.append("--cold-clientapp")
        env = dict(os.environ if self.env is None else self.env)
        env["ZK0_WALLET_PASSWORD"] = node.password
        process = start_process(f"supernode {index}", cmd, state / "supernode.log", env=env)
        self.supernodes.append(process)
        return process

    def wait_nodes(self, count: int, timeout: float = 120.0) -> None:
        wait_nodes(self.address, count, self.supernodes, timeout=timeout)

    def stop(self) -> None:
        for process in [*self.supernodes, self.superlink]:
            if process is not None:
                process.stop()

    def logs(self) -> str:
        """Every process's log tail, for a failure report."""
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log_tail()}" for p in
                         [self.superlink, *self.supernodes] if p is not None)


def write_state(path: Path, state: dict) -> None:
    """``zk0agg start``'s connection facts, for ``zk0agg run`` / ``approve`` / ``contributions`` defaults."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
