"""The app guard: Flower's ``flwr-clientapp`` / ``flwr-serverapp``, refusing every app bundle not pinned here.

In Flower's deployment engine the app's code travels with each run in an app bundle (FAB): the SuperLink runs the
bundle's ServerApp, and every SuperNode runs the bundle's ClientApp on its private data. Both start one process per
task through ``flower-superexec``, which finds ``flwr-clientapp`` / ``flwr-serverapp`` on ``PATH`` and passes on its
environment. ``zk0node start`` and ``zk0agg start`` put a launcher of this script first on that ``PATH``. Before
Flower installs and imports a bundle, the guard hashes the bundle's bytes (sha256, Flower's own FAB hash) and
compares it with the hashes the operator pinned (``--app-hash``, passed as ``ZK0_APP_HASHES``). On a mismatch the
bundle is neither unpacked nor imported: Flower reports the task as failed (a node replies to the aggregator with
an error naming the hash) and the operator's log says why.

Flower then loads the app not from those bytes but from the folder named by the fab id, version and hash the
SuperLink *reports* (``get_project_dir``): a report naming an older bundle already installed under the node's Flower
home would run that one, and a version such as ``../../x`` a folder outside it. So the guard also refuses a task
whose reported hash is not the sha256 of the bundle it carries (``check_reported_hash``) or whose run reports
another app id or version than the bundle's own (``check_reported_run``): what is checked is what is loaded.

Why a node needs it: a node keeps its data private, so it must not run code it has not reviewed. Why the
aggregator needs it: in flwr 1.41 the SuperLink's one port also serves the Control API, which accepts runs from
anyone who can reach it; the ServerApp process holds the aggregator's chain key.

Flower's own ``--trusted-entities`` does not serve here: in flwr 1.41 it accepts only bundles the Flower Hub has
signed (``valid_license``) and refuses every bundle submitted directly to a SuperLink.

This file runs as a script (``python -P app_guard.py clientapp|serverapp ARGS``) and imports only the standard
library and Flower, so none of zk0's own modules are loaded before the check: the app that then runs is the
pinned bundle, whole.

The warm host (``python -P app_guard.py host SOCKET``, started by ``zk0node start``): Flower 1.41 starts a new
``flwr-clientapp`` process for every message, and most of a message's time went into starting Python and importing
torch, LeRobot, transformers and EZKL (measured: ~14 s of a ~16 s start, the model build and dataset load ~1 s).
The host imports those libraries once (``PRELOAD``: third-party packages of the node's own environment, none of
zk0's code) and waits on a Unix socket in the node's state folder. The ``flwr-clientapp`` launcher then hands its
task to the host (arguments, environment, working folder and its stdin/stdout/stderr), and the host forks one
child per task that runs exactly what the launcher would have run: ``protect`` and Flower's ``flwr-clientapp``,
one task, then exits. So every bundle is still checked before it is unpacked or imported, zk0's code still comes
only from the pinned bundle, and no state outlives a task; only the import work is shared. Where no host answers,
the launcher runs the task itself, as before.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import sys
import traceback

HASHES_ENV = "ZK0_APP_HASHES"  # comma-separated sha256 hex digests of the app bundles this machine runs
HOST_ENV = "ZK0_CLIENTAPP_HOST"  # the warm host's Unix socket (set by zk0node start; unset: no host)
# What the host imports once: the node's installed libraries the ClientApp uses, never zk0's own modules.
PRELOAD = ("numpy", "torch", "transformers", "datasets", "lerobot.policies.factory",
           "lerobot.policies.smolvla.modeling_smolvla", "lerobot.datasets.lerobot_dataset", "lerobot.datasets.factory",
           "ezkl", "onnx", "onnxscript", "web3", "eth_account", "flwr.app", "flwr.clientapp")

log = logging.getLogger("zk0.app_guard")


class UntrustedApp(RuntimeError):
    """A run brought an app bundle whose hash the operator has not pinned."""


def pinned_hashes() -> set[str]:
    """The operator's pinned bundle hashes; empty means nothing is trusted (fail closed)."""
    return {h.strip().lower().removeprefix("0x") for h in os.environ.get(HASHES_ENV, "").split(",") if h.strip()}


def check_bundle(fab_content: bytes, pinned: set[str]) -> str:
    """The bundle's sha256 if pinned; ``UntrustedApp`` otherwise."""
    digest = hashlib.sha256(fab_content).hexdigest()
    if digest not in pinned:
        raise UntrustedApp(f"refused app bundle sha256 {digest}: it is not the app pinned with --app-hash "
                           f"({', '.join(sorted(pinned)) or 'none pinned'})")
    return digest


def check_reported_hash(fab):
    """``fab`` (Flower's ``Fab``) if the hash the SuperLink reports for it is its content's sha256; Flower loads the
    app from the folder of the reported hash, so any other value could name another installed bundle."""
    digest = hashlib.sha256(fab.content).hexdigest()
    if str(fab.hash_str).strip().lower() != digest:
        raise UntrustedApp(f"refused app bundle: the task reports hash {str(fab.hash_str)[:80]!r} for a bundle whose "
                           f"sha256 is {digest} (Flower would load the app installed under the reported hash)")
    return fab


def check_reported_run(run, fab) -> None:
    """The fab id and version the SuperLink reports for a task's run must be the bundle's own (N10, issue 30):
    Flower builds the folder it loads the ClientApp from out of them, so a version such as ``../../x`` would load
    code from outside the Flower home. An unpinned bundle is not read here: the install guard refuses it."""
    from flwr.cli.config_utils import get_fab_metadata

    if hashlib.sha256(fab.content).hexdigest() not in pinned_hashes():
        return
    own = get_fab_metadata(fab.content)
    if (run.fab_id, run.fab_version) != own:
        raise UntrustedApp(f"refused app bundle: the task's run reports app {str(run.fab_id)[:80]!r} version "
                           f"{str(run.fab_version)[:80]!r}, the bundle is {own[0]!r} version {own[1]!r} (Flower "
                           "would load the app from the folder they name)")


_REFUSED: list[UntrustedApp] = []  # a task's refusal found while pulling it, raised by the install guard


def guard_reported_run(pull_task_input):
    """Wrap Flower's ``pull_task_input`` (how a ClientApp runtime gets its task) with ``check_reported_run``. A
    refusal is raised by the install guard, right after: by then Flower knows the task's message, so the node
    replies with the error (raised here, the task would end without a reply and the round wait for it)."""

    def pull_checked(*args, **kwargs):
        message, context, run, fab = pull_task_input(*args, **kwargs)
        try:
            check_reported_run(run, fab)
        except UntrustedApp as err:
            _REFUSED.append(err)
        return message, context, run, fab

    return pull_checked


def guard_reported_hash(fab_from_proto):
    """Wrap Flower's ``fab_from_proto`` (how a runtime receives a task's bundle) with ``check_reported_hash``."""

    def fab_from_proto_checked(*args, **kwargs):
        try:
            return check_reported_hash(fab_from_proto(*args, **kwargs))
        except UntrustedApp as err:
            print(f"zk0 app guard: {err}", file=sys.stderr, flush=True)
            raise

    return fab_from_proto_checked


def guard(install):
    """Wrap Flower's ``install_from_fab`` so that the check runs before anything of the bundle is unpacked."""

    def install_checked(fab_file, *args, **kwargs):
        if not isinstance(fab_file, bytes):
            raise UntrustedApp("refused an app bundle given as a path: the guard checks bundle bytes only")
        try:
            if _REFUSED:
                raise _REFUSED.pop()
            digest = check_bundle(fab_file, pinned_hashes())
        except UntrustedApp as err:
            print(f"zk0 app guard: {err}", file=sys.stderr, flush=True)
            raise
        log.info("app bundle %s is pinned: running it", digest)
        return install(fab_file, *args, **kwargs)

    return install_checked


# role -> (the module whose ``install_from_fab`` installs the bundle, Flower's entry point)
ROLES = {
    "clientapp": ("flwr.supernode.runtime.run_clientapp", "flwr.supernode.cli.flwr_clientapp:flwr_clientapp"),
    "serverapp": ("flwr.superlink.runtime.run_serverapp", "flwr.superlink.cli.flwr_serverapp:flwr_serverapp"),
}


def protect(role: str):
    """Patch the runtime of ``role``: the bundle it receives must report its own hash and be pinned."""
    runtime = importlib.import_module(ROLES[role][0])  # the module: its package re-exports a function of that name
    runtime.install_from_fab = guard(runtime.install_from_fab)
    runtime.fab_from_proto = guard_reported_hash(runtime.fab_from_proto)
    if role == "clientapp":  # the ServerApp's runtime reads id and version from the bundle itself
        runtime.pull_task_input = guard_reported_run(runtime.pull_task_input)
    return runtime


def run_role(role: str) -> None:
    """What the launcher runs: the guard, then Flower's own entry point of ``role`` (arguments in ``sys.argv``)."""
    protect(role)
    module, _, function = ROLES[role][1].partition(":")
    getattr(importlib.import_module(module), function)()


# ----------------------------------------------------------------------------------------------- the warm host


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules`` and the ClientApp runtime (a library missing here is simply not preloaded). Logging is
    left as it was: a library that configures the root logger on import (LeRobot does) would otherwise print every
    line of Flower's twice in each task."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for name in (*modules, ROLES["clientapp"][0], ROLES["clientapp"][1].partition(":")[0]):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a failed preload only costs the child its own import
            print(f"zk0 clientapp host: not preloaded {name}: {err}", file=sys.stderr, flush=True)
    root.handlers[:] = handlers
    root.setLevel(level)
    # Out of the garbage collector's sight: a child's collections would otherwise touch (and so copy) every page
    # the imports filled (measured: a full collection in a child took 0.48 s and copied ~170 MB; frozen, 0 s).
    gc.collect()
    gc.freeze()


def serve(path: str, modules: tuple[str, ...] = PRELOAD) -> None:
    """The warm host: one forked child per task handed over on ``path``, until our parent (``zk0node start``) is
    gone. The parent is noted before the long preload: noted after it, a parent that died meanwhile would be
    init's pid, and the host would wait for its end forever (issue 34).

    Single-threaded on purpose (``select``, ``waitpid``): a process with threads must not fork."""
    parent = os.getppid()
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # bound before preloading: a task that comes early waits in the backlog
    os.chmod(path, 0o600)
    listener.listen(64)
    preload(modules)
    children = {}
    print(f"zk0 clientapp host ready on {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        while os.getppid() == parent:
            if select.select([listener], [], [], 0.5)[0]:
                conn, _ = listener.accept()
                try:
                    pid = _fork_task(conn, listener)
                except (OSError, ValueError) as err:
                    print(f"zk0 clientapp host: bad hand-over: {err}", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                children[pid] = conn
                print(f"zk0 clientapp host: task process {pid}", file=sys.stderr, flush=True)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is not None:
                    _send_line(conn, str(os.waitstatus_to_exitcode(status)))
                    conn.close()
    finally:
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def _send_line(conn: socket.socket, text: str) -> None:
    try:
        conn.sendall(text.encode() + b"\n")
    except OSError:
        pass  # the launcher is gone (its task was stopped): nothing to tell


def _fork_task(conn: socket.socket, listener: socket.socket) -> int:
    """Receive a launcher's task (JSON, and its fds 0-2) and fork the child that runs it; tell the launcher the
    child's pid (so it can pass signals on)."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if len(fds) != 3:
        raise ValueError(f"expected the launcher's stdin, stdout and stderr, got {len(fds)} descriptors")
    task = json.loads(data)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: the launcher's task, as the launcher would have run it
        listener.close()
        conn.close()
        _run_task(task, fds)
    for fd in fds:
        os.close(fd)
    _send_line(conn, str(pid))
    return pid


def _run_task(task: dict, fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(task["env"])
        os.chdir(task["cwd"])
        sys.argv = [task["argv"][0], *task["argv"][1:]]
        run_role("clientapp")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must end here, never return into the host's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def hand_over(path: str, argv: list[str]) -> int | None:
    """The launcher's side: give the task to the warm host at ``path`` and wait for its exit code; None when no
    host answers (the launcher then runs the task itself)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        task = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}
        socket.send_fds(conn, [json.dumps(task).encode()], [0, 1, 2])
        lines = conn.makefile("r")
        child = int(lines.readline() or 0)
    except (OSError, ValueError):
        conn.close()
        return None
    if child <= 0:
        conn.close()
        return None

    def pass_on(signum, _frame):  # Flower stops a task by signalling the process it started: this one
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, pass_on)
    try:
        return int(lines.readline() or 1)  # the host closes without a code only when it died itself
    except (OSError, ValueError):
        return 1


def main() -> None:
    role = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if role == "host" and len(sys.argv) == 2:
        serve(sys.argv[1])
        return
    if role not in ROLES:
        sys.exit("usage: app_guard.py clientapp|serverapp [flwr-clientapp / flwr-serverapp arguments] "
                 "| host SOCKET")
    if role == "clientapp" and os.environ.get(HOST_ENV):
        code = hand_over(os.environ[HOST_ENV], sys.argv)
        if code is not None:
            sys.exit(code)
    run_role(role)


if __name__ == "__main__":
    main()
