"""A round's verified updates, kept until Krum has chosen, then averaged one at a time.

Small rounds keep the arrays in memory (they stay in the Flower messages anyway). Large rounds (n·d above
``protocol.sketch.EXACT_MAX_VALUES``) spill each verified update to one file as it is gated, so the aggregator
never holds more than the updates in flight; ``mean`` reads the selected ones back a block at a time and sums each
block in float64: the result is the mean of the selected updates, whatever their number, in the memory of the
result and one block.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from itertools import accumulate
from pathlib import Path

import numpy as np

BLOCK = 1 << 22  # values summed at once by ``mean`` (a 32 MB float64 block)


class UpdateStore:
    """Updates with the names and shapes of ``template`` (the round's global model), keyed by node id.

    ``directory``: spill to files there (a temporary folder is made under it and removed by ``close``);
    None: keep the arrays in memory.
    """

    def __init__(self, template: dict[str, np.ndarray], directory: str | Path | None = None) -> None:
        self.layout = [(name, np.shape(a), np.dtype(np.float32)) for name, a in template.items()]
        sizes = [int(np.prod(shape)) for _, shape, _ in self.layout]
        self.size = sum(sizes)
        self._offsets = list(accumulate(sizes, initial=0))  # where each array starts in a spilled file
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

    def mean(self, keys: Iterable[int], weights: Iterable[float] | None = None) -> OrderedDict[str, np.ndarray]:
        """Mean of the updates under ``keys`` (equal weights, or ``weights`` summing to 1), summed in float64 a block
        of ``BLOCK`` values at a time.

        Block by block (each update's block read from its file), so the aggregator holds the float32 result, one
        float64 block and one update's block: not a float64 sum of the whole model (800 MB at real size) next to a
        whole update read back. The same additions in the same order as summing whole arrays: the same bits.
        """
        keys = list(keys)
        if not keys:
            raise ValueError("the mean of no updates")
        weights = None if weights is None else [float(w) for w in weights]
        out = OrderedDict((name, np.empty(shape, np.float32)) for name, shape, _ in self.layout)
        acc = np.empty(min(BLOCK, max(1, self.size)))
        for index, (name, _, _) in enumerate(self.layout):
            flat = out[name].reshape(-1)
            for start in range(0, flat.size, BLOCK):
                stop = min(flat.size, start + BLOCK)
                block = acc[:stop - start]
                block.fill(0.0)
                for i, key in enumerate(keys):
                    if weights is None:
                        block += self._block(key, index, start, stop)
                    else:
                        block += weights[i] * self._block(key, index, start, stop)
                if weights is None:
                    block /= len(keys)
                flat[start:stop] = block  # float64 → float32, as astype would
        return out

    def gram(self, keys: list[int], origin: dict[str, np.ndarray]) -> np.ndarray:
        """Inner products ⟨Δi, Δj⟩ of the updates under ``keys`` as steps from ``origin`` (Δ = θ − θ_g), in float64,
        a block at a time: what the selection needs to know of distances and norms (``protocol.selection``)."""
        n = len(keys)
        out = np.zeros((n, n))
        step = max(1 << 16, BLOCK // max(1, n))
        for index, (name, _, _) in enumerate(self.layout):
            flat_origin = np.ravel(origin[name]).astype(np.float64)
            for start in range(0, flat_origin.size, step):
                stop = min(flat_origin.size, start + step)
                rows = np.stack([self._block(key, index, start, stop) for key in keys]).astype(np.float64)
                rows -= flat_origin[start:stop]
                out += rows @ rows.T
        return out

    def _block(self, key: int, index: int, start: int, stop: int) -> np.ndarray:
        """Values ``start..stop`` of array ``index`` (in the template's order) of the update under ``key``."""
        name, _, dtype = self.layout[index]
        if self.dir is None:
            return np.ravel(self._memory[key][name])[start:stop]
        offset = (self._offsets[index] + start) * dtype.itemsize
        return np.fromfile(self.dir / f"{key}.f32", dtype, stop - start, offset=offset)

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
