"""Logging for the CLIs: our own INFO lines, the libraries' noise only when asked for."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
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
        quiet_ffmpeg()
    else:
        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)


def quiet_ffmpeg() -> None:
    """FFmpeg's errors only, for the whole process. PyAV's level filters what PyAV forwards to Python's logging;
    FFmpeg's own level filters what FFmpeg prints itself once LeRobot has put FFmpeg's default callback back (its
    video encoders do, after each video): set both, or every recorded video prints the mp4 muxer's "Starting second
    pass: moving the moov atom to the beginning of the file" (30 lines on a demo's first run). Errors still show."""
    try:
        import av.logging
    except ImportError:
        return
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)


def single_flower_output() -> None:
    """In a ClientApp process: Flower's lines printed once. Flower's logger has a console handler of its own and
    also propagates to the root logger, which a library gives a handler of its own (LeRobot's import-time
    ``logging.debug`` calls ``basicConfig``): every Flower line then came twice into zk0node.log. Our lines go on
    Flower's logger (``node.client_app.timing_log``), so they keep Flower's handler."""
    flwr = logging.getLogger("flwr")
    if flwr.handlers:
        flwr.propagate = False


# ANSI escape sequences (colours, cursor moves): Flower colours its level names whatever the output is.
_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
_ANSI_TAIL = re.compile(rb"\x1b(\[[0-?]*[ -/]*)?\Z")  # a sequence cut by the end of a read: kept for the next


def strip_ansi(data: bytes, carry: bytes = b"") -> tuple[bytes, bytes]:
    """``carry + data`` without ANSI escape sequences, and the unfinished sequence at its end (to prepend to the
    next chunk): a log file should read as text, the console keeps its colours."""
    data = carry + data
    tail = _ANSI_TAIL.search(data)
    cut = tail.start() if tail else len(data)
    return _ANSI.sub(b"", data[:cut]), data[cut:]


def tee_output(path: str | Path) -> Path:
    """From now on, everything this process (and what it starts, or ``execve``s into) writes to stdout and
    stderr also goes to ``path`` (appended), each line as it comes.

    A forked copier reads two pipes that replace fd 1 and 2, writes each to the original console stream and to the
    file (without ANSI escape sequences: Flower colours its lines even where they go to a file), and ends when
    every writer has closed them (the process and all its children). It ignores Ctrl-C so that the last words of a
    stopping process are still logged. ``teed_output`` does the same for a block and ends the copier when the block
    does.
    """
    return Tee(path).path


@contextlib.contextmanager
def teed_output(path: str | Path, timeout: float = 10.0) -> Iterator[Tee]:
    """``tee_output`` for the block only: afterwards fd 1 and 2 are the console again and the copier has written
    everything and been reaped, so nothing of it outlives the command (issue 34). What the block started must be
    stopped by then: a process still holding the pipes gets ``timeout`` seconds, then its output is dropped. A block
    that ``execve``s hands the copier over instead (``Tee.hand_over``)."""
    tee = Tee(path)
    try:
        yield tee
    finally:
        tee.close(timeout)


class Tee:
    """The copier process and the console descriptors it replaced (put back by ``close``)."""

    def __init__(self, path: str | Path) -> None:
        import select
        import signal

        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pipes = {1: os.pipe(), 2: os.pipe()}
        self.pid = os.fork()
        if self.pid == 0:  # the copier: plain os calls only (the parent may have threads)
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                reads, carry = {}, {}
                for console, (r, w) in pipes.items():
                    os.close(w)
                    reads[r], carry[r] = console, b""
                while reads:
                    ready, _, _ = select.select(list(reads), [], [])
                    for r in ready:
                        data = os.read(r, 65536)
                        if not data:
                            del reads[r]
                            text = carry.pop(r)  # an escape sequence cut off by the end: written as it came
                        else:
                            text, carry[r] = strip_ansi(data, carry[r])
                        for fd, chunk in ((reads.get(r), data), (log_fd, text)):  # the file without colours
                            if fd is None or not chunk:
                                continue
                            try:
                                os.write(fd, chunk)
                            except OSError:
                                pass  # a closed console must not stop the file
            finally:
                os._exit(0)
        self.console = {fd: os.dup(fd) for fd in pipes}  # not inheritable: children get only the pipes
        for console, (r, w) in pipes.items():
            os.dup2(w, console)
            os.close(r)
            os.close(w)

    def close(self, timeout: float = 10.0) -> None:
        """The console back on fd 1 and 2, then the copier reaped once it has drained the pipes (``end_tee``)."""
        from node.supervise import end_tee

        if self.console:
            end_tee(self.pid, self.console, timeout)
            self.console = {}

    def hand_over(self) -> dict:
        """What ``node.supervise.end_tee`` needs to end this copier in what this process ``execve``s into (the
        console descriptors made inheritable for it)."""
        for saved in self.console.values():
            os.set_inheritable(saved, True)
        return {"pid": self.pid, "console": dict(self.console)}
