"""A round's verified updates, kept until the selection has chosen, then averaged a block at a time.

Small rounds keep the arrays in memory (they stay in the Flower messages anyway), and their mean is exact. Large
rounds (n·d above ``protocol.sketch.EXACT_MAX_VALUES``) spill each verified update to one file as it is gated, so
the aggregator never holds more than the updates in flight; ``mean`` reads the chosen ones back a block at a time
and sums each block in float64.

A spilled update is kept as its step from the round's global model, Δ = θ − θ_g, in float16 (half the bytes to
write during the intake and to read back after the last reply: at m = 50 real-size updates, 10 GB instead of 20),
each array scaled by a power of two that puts its largest |Δ| just under 2^15. The mean is then
θ_g + Σ wᵢ·Δ̂ᵢ: per value, within ``HALF_ERROR`` (0.05 %) of the chosen steps of the exact mean of the updates
(``half_error_bound``), not bit for bit. A step float32 cannot hold (|θ − θ_g| above 3.4e38) is kept as the
update itself, in float32. ``precision="float32"`` spills the updates as they came: the same bits as the in-memory mean.
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
HALF_ERROR = 2.0 ** -11 + 2.0 ** -24  # float16's unit roundoff, and float32's for the step θ − θ_g
HALF_FLOOR = 2.0 ** -39  # below 2^-29 of an array's largest step, float16 is subnormal: absolute error ≤ this × it
_TOP = 15  # an array's largest scaled |Δ| lies in [2^14, 2^15): float16's largest finite value is 65,504
_MAX_SHIFT = 100  # 2^100 still a float32: steps of all zeros or below 2^-85 need no more


def half_error_bound(steps: Iterable[np.ndarray], weights: Iterable[float]) -> np.ndarray:
    """Per value, how far the float16-spilled mean may be from the mean of the updates summed exactly: for each
    chosen update's step Δᵢ (one array) and weight wᵢ, wᵢ·(HALF_ERROR·|Δᵢ| + HALF_FLOOR·max|Δᵢ|); the float32
    rounding of the result (half an ulp, today's mean has it too) comes on top."""
    out = None
    for step, w in zip(steps, weights, strict=True):
        step = np.abs(np.asarray(step, np.float64))
        term = w * (HALF_ERROR * step + HALF_FLOOR * (step.max() if step.size else 0.0))
        out = term if out is None else out + term
    return out


class UpdateStore:
    """Updates with the names and shapes of ``template`` (the round's global model), keyed by node id.

    ``directory``: spill to files there (a temporary folder is made under it and removed by ``close``);
    None: keep the arrays in memory. ``precision``: how spilled updates are kept, "float16" (steps from the
    template) or "float32" (as they came).
    """

    def __init__(self, template: dict[str, np.ndarray], directory: str | Path | None = None,
                 precision: str = "float16") -> None:
        if precision not in ("float16", "float32"):
            raise ValueError(f"precision must be float16 or float32, got {precision!r}")
        self.template = template  # the global model: spilled steps are from it (held by the round anyway)
        self.layout = [(name, np.shape(a)) for name, a in template.items()]
        sizes = [int(np.prod(shape)) for _, shape in self.layout]
        self.size = sum(sizes)
        self._offsets = list(accumulate(sizes, initial=0))  # where each array starts in a spilled file
        self.dir = None if directory is None else Path(tempfile.mkdtemp(prefix="zk0-updates-", dir=directory))
        self.half = self.dir is not None and precision == "float16"
        self._memory: dict[int, dict[str, np.ndarray]] = {}
        self._shifts: dict[int, list[int] | None] = {}  # key → each array's scale exponent; None: kept in float32

    @property
    def spills(self) -> bool:
        return self.dir is not None

    def put(self, key: int, arrays: dict[str, np.ndarray]) -> None:
        """Keep ``arrays`` (float32, finite, the template's names in its order: the gate checked them)."""
        if self.dir is None:
            self._memory[key] = arrays
            return
        tmp = self.dir / f"{key}.part"
        with open(tmp, "wb") as f:
            shifts = self._write_steps(f, arrays) if self.half else None
            if shifts is None:  # float32 spill, or a step float32 cannot hold: the update as it came
                f.seek(0)
                f.truncate()
                for name, _ in self.layout:
                    np.ascontiguousarray(arrays[name], np.float32).tofile(f)
        self._shifts[key] = shifts
        tmp.rename(self.dir / f"{key}.bin")  # complete or absent

    @np.errstate(over="ignore")  # a step that overflows is found, and falls back
    def _write_steps(self, f, arrays: dict[str, np.ndarray]) -> list[int] | None:
        """Write each array's step from the template in float16, scaled by 2^shift; the shifts, or None where a
        step overflows float32. Two passes a block at a time (the largest step, then the values): no update-sized
        temporary."""
        shifts = []
        for name, _ in self.layout:
            update, origin = np.ravel(arrays[name]), np.ravel(self.template[name])
            top = 0.0
            for start in range(0, update.size, BLOCK):
                step = np.subtract(update[start:start + BLOCK], origin[start:start + BLOCK], dtype=np.float32)
                top = max(top, float(np.max(np.abs(step))))
            if not np.isfinite(top):
                return None
            shift = min(_MAX_SHIFT, _TOP - int(np.frexp(top)[1])) if top > 0 else _MAX_SHIFT
            scale = np.float32(2.0 ** shift)
            for start in range(0, update.size, BLOCK):
                step = np.subtract(update[start:start + BLOCK], origin[start:start + BLOCK], dtype=np.float32)
                step *= scale  # a power of two: exact
                step.astype(np.float16).tofile(f)  # rounded to nearest
            shifts.append(shift)
        return shifts

    def get(self, key: int) -> OrderedDict[str, np.ndarray]:
        """The update kept under ``key`` (read from its file when spilled), in float32."""
        return OrderedDict((name, self._values(key, index, 0, int(np.prod(shape))).astype(np.float32).reshape(shape))
                           for index, (name, shape) in enumerate(self.layout))

    def mean(self, keys: Iterable[int], weights: Iterable[float] | None = None) -> OrderedDict[str, np.ndarray]:
        """Mean of the updates under ``keys`` (equal weights, or ``weights`` summing to 1), summed in float64 a block
        of ``BLOCK`` values at a time.

        Block by block (each update's block read from its file), so the aggregator holds the float32 result, two
        float64 blocks and one update's block: not a float64 sum of the
        whole model (800 MB at real size) next to a whole update read back. Updates kept in float32 are summed as
        whole arrays would be (the same bits); float16 steps are added to the template once, weighted by their
        share: θ_g·Σ wᵢ + Σ wᵢ·Δ̂ᵢ.
        """
        keys = list(keys)
        if not keys:
            raise ValueError("the mean of no updates")
        weights = None if weights is None else [float(w) for w in weights]
        shares = [1.0] * len(keys) if weights is None else weights
        stepped = [self._shifts.get(key) is not None for key in keys]  # kept as float16 steps
        steps = sum(w for w, half in zip(shares, stepped, strict=True) if half)
        out = OrderedDict((name, np.empty(shape, np.float32)) for name, shape in self.layout)
        acc = np.empty(min(BLOCK, max(1, self.size)))
        tmp = np.empty_like(acc) if any(stepped) else None
        for index, (name, _) in enumerate(self.layout):
            flat = out[name].reshape(-1)
            for start in range(0, flat.size, BLOCK):
                stop = min(flat.size, start + BLOCK)
                block, part = acc[:stop - start], None if tmp is None else tmp[:stop - start]
                block.fill(0.0)
                for i, key in enumerate(keys):
                    values, shift = self._raw(key, index, start, stop), self._shift(key, index)
                    w = None if weights is None else weights[i]
                    if shift is None:  # the update itself, in float32: as before
                        block += values if w is None else w * values
                    else:  # its step, scaled by 2^shift: exact in float64
                        np.multiply(values, np.float64((1.0 if w is None else w) * 2.0 ** -shift), out=part)
                        block += part
                if any(stepped):  # the template once for every step, in float64
                    np.multiply(np.ravel(self.template[name])[start:stop], np.float64(steps), out=part)
                    block += part
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
        for index, (name, _) in enumerate(self.layout):
            flat_origin = np.ravel(origin[name]).astype(np.float64)
            for start in range(0, flat_origin.size, step):
                stop = min(flat_origin.size, start + step)
                rows = np.stack([self._values(key, index, start, stop) for key in keys])
                rows -= flat_origin[start:stop]
                out += rows @ rows.T
        return out

    def _values(self, key: int, index: int, start: int, stop: int) -> np.ndarray:
        """Values ``start..stop`` of array ``index`` of the update under ``key``, in float64 (θ_g + Δ̂ for a step)."""
        values, shift = self._raw(key, index, start, stop).astype(np.float64), self._shift(key, index)
        if shift is not None:
            values *= 2.0 ** -shift
            values += np.ravel(self.template[self.layout[index][0]])[start:stop]
        return values

    def _shift(self, key: int, index: int) -> int | None:
        """The scale exponent of array ``index`` of the step kept under ``key``; None: the update is kept itself."""
        shifts = self._shifts.get(key)
        return None if shifts is None else shifts[index]

    def _raw(self, key: int, index: int, start: int, stop: int) -> np.ndarray:
        """Values ``start..stop`` of array ``index`` as kept under ``key``: the update's float32 values, or its
        scaled float16 step."""
        if self.dir is None:
            return np.ravel(self._memory[key][self.layout[index][0]])[start:stop]
        dtype = np.dtype(np.float16 if self._shifts.get(key) is not None else np.float32)
        offset = (self._offsets[index] + start) * dtype.itemsize
        return np.fromfile(self.dir / f"{key}.bin", dtype, stop - start, offset=offset)

    def close(self) -> None:
        self._memory.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

