"""EZKL's long calls, each in a child process, so the caller's other threads keep running.

EZKL's Python bindings hold the GIL for the whole of a call: measured, a thread ticking every 50 ms saw one gap of
47 s while ``ezkl.prove`` ran at real size (2026-12-02). In a Flower ClientApp that thread is the task heartbeat:
Flower gives up on a task after 2 × 30 s without one ("ClientApp stopped responding"), so under CPU load a node
lost every round in which proving, or building the circuit, took longer than a minute. A child process holds no
lock of ours; it dies with its parent (``PR_SET_PDEATHSIG``), so a killed node leaves no prover running, and
scratch folders of killed provers are swept by the next one (:func:`scratch_dir`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The calls that take seconds to minutes at real size; the rest (gen_settings, verify) stay in process.
LONG_CALLS = frozenset({"calibrate_settings", "compile_circuit", "setup", "gen_witness", "prove", "gen_srs"})
_SCRATCH = re.compile(r"^zk0-(?:prove|verify)-(\d+)-")


def call(name: str, *args):
    """``ezkl.<name>(*args)`` in a fresh child process; returns its result. Arguments and result must be JSON
    (paths as strings). An EZKL error in the child is raised here as RuntimeError with the child's message."""
    if name not in LONG_CALLS:
        raise ValueError(f"ezkl.{name} is not one of the calls run in a child process: {sorted(LONG_CALLS)}")
    # This file run as a script (``-P``: its folder not on sys.path), not ``-m prover.ezkl_process``: ``-m`` imports
    # the ``prover`` package first (torch, onnx: 2.8 cpu s of a child's 2.8 s, twice a proof); the child needs only
    # the standard library and ezkl.
    done = subprocess.run([sys.executable, "-P", __file__, name, str(os.getpid())], input=json.dumps(list(args)),
                          capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        reason = f"killed by signal {-done.returncode}" if done.returncode < 0 else "; ".join(tail) or "no output"
        raise RuntimeError(f"ezkl.{name} failed in its child process: {reason}")
    return json.loads(lines[-1])["result"]


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A temporary folder named after this process; folders left by dead processes (SIGKILL skips every
    cleanup) are removed first."""
    sweep_scratch()
    with tempfile.TemporaryDirectory(prefix=f"zk0-{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)


def sweep_scratch(root: str | Path | None = None) -> int:
    """Remove ``zk0-prove-<pid>-*`` / ``zk0-verify-<pid>-*`` folders whose process is gone; returns how many."""
    removed = 0
    for path in Path(root or tempfile.gettempdir()).iterdir():
        m = _SCRATCH.match(path.name)
        if m and path.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this process when its parent exits (a killed node leaves no prover behind)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)


def _main() -> None:
    name, parent = sys.argv[1], int(sys.argv[2])
    _die_with(parent)
    import ezkl

    args = json.loads(sys.stdin.read())
    try:
        result = getattr(ezkl, name)(*args)
    except Exception as err:  # report EZKL's own message to the parent, which raises it
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"result": result}, default=str))


if __name__ == "__main__":
    _main()
