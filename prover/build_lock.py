"""One build at a time of what a shared cache lacks (a circuit's settings and keys, a dev SRS)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def building(product: Path, lock_dir: Path) -> Iterator[bool]:
    """Whether ``product`` must still be built, asked while holding ``lock_dir``'s build lock until the block ends.

    Processes that share a cache (two nodes on one machine, the test suite's workers) then wait for one build
    instead of each making its own (minutes at real size). The lock only saves work: builds are published
    atomically either way, so a process that does not take it still never sees half a build.
    """
    if product.is_file():
        yield False
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield not product.is_file()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
