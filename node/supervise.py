"""What ``zk0node start`` becomes once its checks pass: the one owner of the SuperNode, the warm ClientApp host and
everything they start, so that none of it outlives the command (issue 34: a SuperNode that gave up connecting left
a 1 GB host and the log copier running, which later printed into the finished command's output).

``zk0node start`` ``execve``s into this file (same pid: Ctrl-C, ``kill PID``, ``zk0node status`` and the tools that
started it see no change) rather than staying in Python with the ~1 GB of torch and LeRobot its checks imported.
It runs as a script (``python -P supervise.py SPEC``) and imports only the standard library and psutil. It:

- starts the host and the SuperNode, each the leader of a process group of its own, which what it starts joins
  (Flower's SuperExec and ClientApp processes, the host's task processes), and each set to die with this process
  even when it is SIGKILLed (``_DIE_WITH_PARENT``); this process is their subreaper, so a descendant whose parent
  dies comes back here instead of to init;
- passes Ctrl-C, SIGTERM and SIGHUP on to the SuperNode (in its own group, it gets no terminal signal itself);
- once the SuperNode exits, however that happened, stops and reaps every process of ours (``NodeProcesses.stop``),
  then ends the log copier ``tee`` started (``end_tee``), and only then exits: 0 when the SuperNode stopped cleanly,
  otherwise one line saying why (``zk0node: error: ...``) and 2, as every other ``zk0node`` error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

log = logging.getLogger("zk0.supervise")

# Started through this, a child gets SIGTERM when its parent dies, even by SIGKILL (Linux PR_SET_PDEATHSIG, which
# survives the exec); set in the child itself rather than in a preexec_fn, unsafe in a parent that has threads.
_DIE_WITH_PARENT = """import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass  # not Linux: the parent's own clean-up still stops it
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the parent died before the line above could take effect
os.execv(sys.argv[2], sys.argv[2:])
"""
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
_CONNECTION_ERROR = 305  # Flower's ExitCode.SUPERNODE_CONNECTION_ERROR


def _subreaper(on: bool | None = None) -> bool:
    """Whether this process adopts its orphaned descendants (Linux); ``on`` sets it first. False where unsupported."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return False
    if on is not None and prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        return False
    value = ctypes.c_int(0)
    return prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0 and bool(value.value)


class NodeProcesses:
    """Our children and everything they start: ``spawn`` them inside ``with``; ``stop`` runs however it ends."""

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace  # seconds between SIGTERM and SIGKILL
        self.children: list[subprocess.Popen] = []
        self._was_subreaper = False

    def __enter__(self) -> NodeProcesses:
        self._was_subreaper = _subreaper()
        _subreaper(True)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.stop()
        finally:
            if not self._was_subreaper:
                _subreaper(False)

    def spawn(self, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start ``cmd`` (an absolute path first) as our child, leading a process group of its own."""
        proc = subprocess.Popen([sys.executable, "-P", "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd], env=env,
                                stdin=subprocess.DEVNULL, process_group=0)
        self.children.append(proc)
        return proc

    @staticmethod
    def wait(proc: subprocess.Popen) -> int:
        """Until ``proc`` exits; its exit code (-N: killed by signal N). It is left unreaped: its children watch its
        pid (Flower's ``--parent-pid``) and would stop noisily, mid-import, if it vanished before ``stop`` ends them."""
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def stop(self) -> None:
        """SIGTERM every process of ours, SIGKILL what is left after ``grace`` seconds; reap them all."""
        import psutil

        for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
            procs = self._ours()
            if not procs:
                break
            for pgid in {child.pid for child in self.children}:
                with contextlib.suppress(OSError):  # an empty group
                    os.killpg(pgid, sig)
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)
            psutil.wait_procs(procs, timeout=self.grace if sig == signal.SIGTERM else 5.0)  # reaps our children
        left = self._ours()
        if left:
            log.warning("processes still there after SIGKILL: %s", [proc.pid for proc in left])
        for child in self.children:
            child.poll()  # Popen's own record of it (psutil may have reaped it already)

    def _ours(self) -> list:
        """Every live or unreaped process we started: our children, their descendants, and the orphans of their
        process groups we adopted. Anything else this process runs (the log copier) is left alone."""
        import psutil

        groups = {child.pid for child in self.children}
        found = []
        try:
            direct = psutil.Process().children()
        except psutil.Error:
            return []
        for proc in direct:
            try:
                if proc.pid in groups or os.getpgid(proc.pid) in groups:
                    found += [proc, *proc.children(recursive=True)]
            except (psutil.Error, OSError):
                continue
        return found


@contextlib.contextmanager
def passed_on() -> Iterator[dict]:
    """While inside, Ctrl-C (SIGINT), SIGTERM and SIGHUP to this process become a SIGTERM to the process whose pid
    the block puts in the yielded dict's ``pid`` (the SuperNode: Flower stops gracefully on it as on SIGINT, and one
    that comes before Flower's handlers, mid-import, ends it silently where SIGINT would print a traceback);
    ``signal`` records the last one, so that one that came before the SuperNode started is not lost."""
    target: dict = {"pid": None, "signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield target
        return

    def pass_on(signum: int, _frame) -> None:
        target["signal"] = signum
        if target["pid"] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target["pid"], signal.SIGTERM)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield target
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def end_tee(pid: int, console: dict[int, int], timeout: float = 10.0) -> None:
    """Put the console descriptors ``console`` ({1: fd, 2: fd}) back on fd 1 and 2 (our ends of the copier's pipes
    close), then reap the copier ``pid`` once it has drained them; SIGKILL it after ``timeout`` seconds if something
    else still holds them (node.logs.tee_output)."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, saved in console.items():
        os.dup2(saved, fd)
        os.close(saved)
    deadline = time.monotonic() + timeout
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                log.warning("log copier still busy after %.0f s: stopping it (a process that outlived the command "
                            "holds its pipes)", timeout)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.05)
    except ChildProcessError:
        pass  # already reaped


def why_stopped(code: int, spec: dict) -> str:
    """One line on why the SuperNode stopped with ``code``: Flower's own exit code (it logs ``Exit Code: N``; its
    process exits 1 for every error), a signal, or its exit status."""
    log_file, flower = spec.get("log"), None
    if log_file:
        with contextlib.suppress(OSError), open(log_file, "rb") as handle:  # this run's last 64 kB
            handle.seek(max(spec.get("log_start", 0), handle.seek(0, os.SEEK_END) - 65536))
            codes = re.findall(rb"Exit Code: (\d+)", handle.read())
            flower = int(codes[-1]) if codes else None
    where = f" (log {log_file})" if log_file else ""
    if flower == _CONNECTION_ERROR:
        wait = spec.get("max_wait_time")
        within = f" within --max-wait-time {wait:g} s" if wait is not None else ""
        return (f"could not connect to the SuperLink at {spec.get('superlink')}{within}: check that it runs, the "
                f"address and the TLS settings{where}")
    if flower is not None:
        return f"the SuperNode stopped with Flower exit code {flower}{where}"
    if code < 0:
        return f"the SuperNode was killed by {signal.Signals(-code).name}{where}"
    return f"the SuperNode exited with status {code}{where}"


def supervise(spec: dict) -> int:
    """Run the SuperNode of ``spec`` (and its warm host) until it exits, stop everything, end the tee; the exit code
    of ``zk0node start``."""
    code = None
    try:
        with passed_on() as target, NodeProcesses() as processes:  # signals are passed on until all is stopped
            if spec.get("host"):
                processes.spawn(spec["host"])
            if target["signal"] is None:
                node = processes.spawn(spec["node"])
                target["pid"] = node.pid
                if target["signal"] is not None:  # came while it started
                    os.kill(node.pid, signal.SIGTERM)
                code = processes.wait(node)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # all is stopped: the last words, not a traceback
        tee = spec.get("tee")
        if tee:
            end_tee(tee["pid"], {int(fd): saved for fd, saved in tee["console"].items()})
    if code is None:
        print("zk0node: interrupted", file=sys.stderr, flush=True)
        return 130
    if code == 0 or (target["signal"] is not None and code == -signal.SIGTERM):  # stopped as asked
        return 0
    print(f"zk0node: error: {why_stopped(code, spec)}", file=sys.stderr, flush=True)
    return 2


def exec_supervisor(spec: dict, env: dict) -> NoReturn:
    """Become this script (same pid) with ``spec``: {"node": SuperNode command, "host": host command or None,
    "superlink", "max_wait_time", "log", "log_start", "tee": {"pid", "console": {1: fd, 2: fd}} or None}; the
    tee's console descriptors must be inheritable."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-P", os.path.abspath(__file__), json.dumps(spec)], env)


def main(argv: list[str]) -> int:
    try:
        return supervise(json.loads(argv[1]))
    except OSError as err:  # the SuperNode's command could not start: one line, as every zk0node error
        print(f"zk0node: error: cannot run the SuperNode: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
