"""A round's verified updates, kept until Krum has chosen, then averaged one at a time.

Small rounds keep the arrays in memory (they stay in the Flower messages anyway). Large rounds (n·d above
``aggregator.sketch.EXACT_MAX_VALUES``) spill each verified update to one file as it is gated, so the aggregator
never holds more than the updates in flight; ``mean`` reads the selected ones back one array at a time and sums
them into one float64 buffer: the result is the mean of the selected updates, whatever their number.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class UpdateStore:
    """Updates with the names and shapes of ``template`` (the round's global model), keyed by node id.

    ``directory``: spill to files there (a temporary folder is made under it and removed by ``close``);
    None: keep the arrays in memory.
    """

    def __init__(self, template: dict[str, np.ndarray], directory: str | Path | None = None) -> None:
        self.layout = [(name, np.shape(a), np.dtype(np.float32)) for name, a in template.items()]
        self.size = sum(int(np.prod(shape)) for _, shape, _ in self.layout)
        self.dir = None if directory is None else Path(tempfile.mkdtemp(prefix="zk0-updates-", dir=directory))
        self._memory: dict[int, dict[str, np.ndarray]] = {}

    @property
    def spills(self) -> bool:
        return self.dir is not None

    def put(self, key: int, arrays: dict[str, np.ndarray]) -> None:
        """Keep ``arrays`` (float32, the template's names in its order: the gate checked them)."""
        if self.dir is None:
            self._memory[key] = arrays
            return
        tmp = self.dir / f"{key}.part"
        with open(tmp, "wb") as f:
            for name, _, dtype in self.layout:
                np.ascontiguousarray(arrays[name], dtype).tofile(f)
        tmp.rename(self.dir / f"{key}.f32")  # complete or absent

    def get(self, key: int) -> OrderedDict[str, np.ndarray]:
        """The update kept under ``key`` (read from its file when spilled)."""
        return OrderedDict(self._arrays(key))

    def mean(self, keys: Iterable[int]) -> OrderedDict[str, np.ndarray]:
        """Equal-weight mean of the updates under ``keys``, read back one at a time into one float64 buffer."""
        keys = list(keys)
        if not keys:
            raise ValueError("the mean of no updates")
        acc = OrderedDict((name, np.zeros(shape, np.float64)) for name, shape, _ in self.layout)
        for key in keys:
            for name, array in self._arrays(key):
                acc[name] += array
        out = OrderedDict()
        for name in list(acc):
            total = acc.pop(name)
            total /= len(keys)  # in place: no second float64 copy of a 400 MB array
            out[name] = total.astype(np.float32)
            del total  # each float64 array freed as soon as it is cast
        return out

    def _arrays(self, key: int):
        """(name, array) of the update under ``key``, one array in memory at a time when spilled."""
        if self.dir is None:
            yield from self._memory[key].items()
            return
        with open(self.dir / f"{key}.f32", "rb") as f:
            for name, shape, dtype in self.layout:
                yield name, np.fromfile(f, dtype, int(np.prod(shape))).reshape(shape)

    def close(self) -> None:
        self._memory.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
