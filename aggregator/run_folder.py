"""A run's output folder: one writer at a time, and never another run's.

``zk0agg run`` checks the folder before it submits anything (``check_run_paths``); the ServerApp holds it for the
whole run (``RunFolderLock``) and checks it again, since anyone who reaches the Control API may submit a run. The
lock is ``flock`` on a file in the folder: the OS drops it when its process dies, so a killed run never leaves a
stale lock behind, and a second ``--resume`` of a run that is still going is refused instead of racing it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from node.errors import UserError

JOURNAL_FILE = "chain-journal.sqlite"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".run.lock"
STOP_FILE = "STOP"  # written by Ctrl-C of zk0agg run / demo: the ServerApp ends the run at its next pull


class RunFolderLock:
    """Held by the one process that writes ``out_dir``; ``acquire`` refuses in one line while another holds it."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"another run is writing {self.path.parent} (pid {holder}): one run per output folder; "
                            "wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def request_stop(out_dir: str | Path) -> None:
    """Ask the run writing ``out_dir`` to stop (the same machine: ``zk0agg run`` and its ServerApp share the folder,
    whichever engine runs it)."""
    (Path(out_dir) / STOP_FILE).write_text(f"{os.getpid()}\n")


def stop_requested(out_dir: str | Path) -> bool:
    return (Path(out_dir) / STOP_FILE).exists()


def wait_for_writer(out_dir: str | Path, timeout: float) -> bool:
    """Wait up to ``timeout`` s until no process writes ``out_dir`` (its run ended); False if one still does."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            RunFolderLock(out_dir).acquire().release()
            return True
        except UserError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def holds_run(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` has a run's record in it (its summary or its chain journal)."""
    out = Path(out_dir)
    return (out / SUMMARY_FILE).exists() or (out / JOURNAL_FILE).exists()


def claim_run_folder(out_dir: str | Path, resume: bool) -> RunFolderLock:
    """The ServerApp's hold on its output folder for the whole run: the lock, then (under it) a new run refused in
    a folder that holds another run."""
    lock = RunFolderLock(out_dir).acquire()
    if not resume and holds_run(out_dir):
        lock.release()
        raise UserError(_HOLDS_RUN.format(out=out_dir))
    (Path(out_dir) / STOP_FILE).unlink(missing_ok=True)  # an earlier run's stop request is not this run's
    return lock


_HOLDS_RUN = ("{out} holds a run already: --resume continues it, or give another --out (a new run never replaces "
              "another run's summary and journal)")


def check_run_paths(out_dir: str | Path, resume: bool) -> None:
    """Before a run is submitted: its output folder can be written, and what ``--resume`` reads can be read (the
    summary and the chain journal), so a bad path fails here in one line, not later as a ServerApp traceback."""
    import sqlite3

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"the output folder {out} is a file: give --out a folder")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the output folder {out} ({existing} is not writable)")
    if (out / LOCK_FILE).exists():
        RunFolderLock(out).acquire().release()  # refused while a run writes there
    if not resume:
        if holds_run(out):
            raise UserError(_HOLDS_RUN.format(out=out))
        return
    summary = out / SUMMARY_FILE
    if summary.exists():
        try:
            json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"cannot resume: {summary} is unreadable ({err})") from None
    journal = out / JOURNAL_FILE
    if journal.exists():
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise sqlite3.DatabaseError("quick_check failed")
                db.execute("SELECT count(*) FROM ops").fetchone()
        except sqlite3.Error as err:
            raise UserError(f"cannot resume: the chain journal {journal} is corrupted ({err}); keep a copy and "
                            "look into it before anything is sent again") from None
