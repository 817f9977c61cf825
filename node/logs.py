"""Logging for the CLIs: our own INFO lines, the libraries' noise only when asked for."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# Loggers that are loud at INFO/WARNING for things a user cannot act on (torchcodec's FFmpeg probe: LeRobot falls
# back to PyAV; Flower's per-round banners duplicate our round table).
_QUIET = {"lerobot.utils.import_utils": logging.ERROR, "flwr": logging.WARNING, "httpx": logging.WARNING,
          "ezkl": logging.ERROR}


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not verbose:
        for name, level in _QUIET.items():
            logging.getLogger(name).setLevel(level)
        # Flower resets its logger's level when a run starts; a filter stays.
        logging.getLogger("flwr").addFilter(_warnings_only)
        logging.getLogger("flwr").propagate = False
        try:  # FFmpeg's encoders (rollout videos) print statistics to stderr unless told not to
            import av

            av.logging.set_level(av.logging.ERROR)
        except ImportError:
            pass
    else:
        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)


def tee_output(path: str | Path) -> Path:
    """From now on, everything this process (and what it starts, or ``execve``s into) writes to stdout and
    stderr also goes to ``path`` (appended), each line as it comes.

    A forked copier reads two pipes that replace fd 1 and 2, writes each to the original console stream and to the
    file, and ends when every writer has closed them (the process and all its children). It ignores Ctrl-C so that
    the last words of a stopping process are still logged.
    """
    import select
    import signal

    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pipes = {1: os.pipe(), 2: os.pipe()}
    if os.fork() == 0:  # the copier: plain os calls only (the parent may have threads)
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            reads = {}
            for console, (r, w) in pipes.items():
                os.close(w)
                reads[r] = console
            while reads:
                ready, _, _ = select.select(list(reads), [], [])
                for r in ready:
                    data = os.read(r, 65536)
                    if not data:
                        del reads[r]
                        continue
                    for fd in (reads[r], log_fd):
                        try:
                            os.write(fd, data)
                        except OSError:
                            pass  # a closed console must not stop the file
        finally:
            os._exit(0)
    for console, (r, w) in pipes.items():
        os.dup2(w, console)
        os.close(r)
        os.close(w)
    return path
