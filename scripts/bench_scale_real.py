"""The scale benchmark's real-size parts (``scripts/bench_scale.py real`` and ``aggregate``): the round's memory,
gate and selection at SmolVLA's full trainable dimension, and the m = n/2 mean read back from the spill files.
Updates are synthetic and seeded per block, so a block is made again without the rest."""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from aggregator.protocol.updates import UpdateStore
from scripts.evalkit import cpu_seconds, peak_rss_mb
from scripts.scale_kit import CACHE, RssSampler, load_average, reply_message, save_result


class RegenStore(UpdateStore):
    """An ``UpdateStore`` that keeps nothing: an update's block is regenerated from its seed when it is read back.
    For n = 100 real-size updates, whose files would take 40 GB of a shared disk; memory behaves as with files (one
    block of one update read back at a time), the time of reading a file is measured with ``--store disk`` at n = 10.
    """

    def __init__(self, template, make_block) -> None:
        super().__init__(template)
        self.make_block, self.regen_seconds = make_block, 0.0

    @property
    def spills(self) -> bool:
        return True  # as a spilled round: the messages let their arrays go once kept

    def put(self, key: int, arrays) -> None:
        pass

    def _raw(self, key: int, index: int, start: int, stop: int) -> np.ndarray:
        t0 = time.perf_counter()
        block = self.make_block(key, index, start, stop)
        self.regen_seconds += time.perf_counter() - t0
        return block


def real_global(d: int) -> OrderedDict:
    """The global model: the proof slice and a body, ``d`` values in all."""
    from node.contribution import SLICE_BIAS, SLICE_WEIGHT

    rng = np.random.default_rng(2)
    w = (rng.standard_normal((32, 720), dtype=np.float32) / np.sqrt(720)).astype(np.float32)
    b = (0.1 * rng.standard_normal(32)).astype(np.float32)
    body = rng.standard_normal(d - w.size - b.size, dtype=np.float32)
    body *= 0.02
    return OrderedDict([(SLICE_WEIGHT, w), (SLICE_BIAS, b), ("body", body)])


def real_block(global_arrays: OrderedDict, i: int, n: int, index: int, start: int, stop: int) -> np.ndarray:
    """Values ``start..stop`` (a block of ``aggregator.protocol.updates.BLOCK``) of array ``index`` of node i's
    update: honest node i sends θ_g + 1e-3·(1 + z_i) (a shared direction plus its own noise); the last of n nodes
    sends the sign-flip of node 0's update, θ_g − Δ_0. Seeded per block, so a block is made again without the rest."""
    from aggregator.protocol.updates import BLOCK

    attacker = i == n - 1
    rng = np.random.default_rng([11, 0 if attacker else i, index, start // BLOCK])
    z = rng.random(stop - start, dtype=np.float32)  # uniform noise of unit variance: 3× cheaper than normal draws
    z -= 0.5
    z *= np.float32(np.sqrt(12.0))
    z += 1.0
    z *= -1e-3 if attacker else 1e-3
    z += np.ravel(list(global_arrays.values())[index])[start:stop]
    return z


def real_update(global_arrays: OrderedDict, i: int, n: int) -> OrderedDict:
    """Node i's whole update (``real_block`` block by block)."""
    from aggregator.protocol.updates import BLOCK

    out = OrderedDict()
    for index, (name, g) in enumerate(global_arrays.items()):
        flat = np.empty(g.size, np.float32)
        for start in range(0, g.size, BLOCK):
            flat[start:start + BLOCK] = real_block(global_arrays, i, n, index, start, min(g.size, start + BLOCK))
        out[name] = flat.reshape(g.shape)
    return out


def as_pulled(message):
    """``message`` as the ServerApp gets it from the SuperLink: each array cut into Flower's chunks and inflated
    again (Flower's ``Array.inflate``: the chunks joined into a bytearray, then copied into bytes), the original let
    go. So the bench's replies cost what a pulled reply costs, not what making one costs."""
    from flwr.app import Array

    record = message.content["arrays"]
    for name in list(record):
        original = record[name]
        record[name] = Array.inflate(original.deflate(), dict(original.slice_array()))
        del original
    return message


def bench_real(n: int, store_kind: str, workers: int, results: Path, d: int) -> None:
    from aggregator.protocol.gate import STRUCTURAL_CHECKS, Gate, RoundContext
    from aggregator.protocol.intake import RoundIntake
    from aggregator.protocol.sketch import SKETCH_DIM, CountSketch, krum_order
    from aggregator.protocol.strategy import to_record
    from prover.hashing import params_hash

    rss = RssSampler()
    global_arrays = real_global(d)
    global_hash = params_hash(list(global_arrays.values()))
    ctx = RoundContext(1, global_arrays, global_hash)
    rss.phase = "sketch buckets"
    t0 = time.perf_counter()
    sketch = CountSketch(SKETCH_DIM, 12345, d)
    _ = sketch.codes
    codes_s = time.perf_counter() - t0
    if store_kind == "disk":
        (CACHE / "spill").mkdir(parents=True, exist_ok=True)
        store = UpdateStore(global_arrays, CACHE / "spill")
    else:
        store = RegenStore(global_arrays, lambda key, index, a, b: real_block(global_arrays, key, n, index, a, b))
    intake = RoundIntake(Gate(list(STRUCTURAL_CHECKS)), ctx, [], store, sketch, workers)
    messages, make_s = [], 0.0
    rss.phase = "replies arriving, gated"
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(n):  # as the ServerApp's arrival loop: a reply is pulled once the gate has room for it
        intake.wait_for_room()
        t1 = time.perf_counter()
        msg = as_pulled(reply_message(i + 1, real_update(global_arrays, i, n)))
        make_s += time.perf_counter() - t1
        messages.append(msg)  # what Flower's loop keeps too (the replies it returns); the gate drops their arrays
        intake.submit(msg)
        del msg
    gated = intake.collect(messages)
    end = max(g.done_at for g in gated)
    sketch.release()  # as the strategy does once every update is sketched
    f, m = max(1, n // 10), max(1, n // 2)
    t1 = time.perf_counter()
    order = krum_order(np.stack([g.sketch for g in gated]), f)[:m]
    selection_s = time.perf_counter() - t1
    rss.phase = "aggregation"
    t1 = time.perf_counter()
    record = to_record(store.mean(gated[i].key for i in order))  # the new global model, as the strategy returns it
    aggregation_s = time.perf_counter() - t1
    del record
    regen_s = getattr(store, "regen_seconds", 0.0)
    store.close()
    out = {"n": n, "d": d, "store": store_kind, "workers": workers, "f": f, "m": m, "sketch_dim": SKETCH_DIM,
           "codes_s": codes_s, "round_wall": end - t0, "round_cpu": cpu_seconds() - c0, "make_replies_s": make_s,
           "after_last_reply": end - intake.last_arrival,
           "gate_mean": float(np.mean([g.gate_seconds for g in gated])),
           "sketch_mean": float(np.mean([g.sketch_seconds for g in gated])),
           "store_mean": float(np.mean([g.store_seconds for g in gated])),
           "statuses": sorted({g.outcome.status for g in gated}),
           "selection_s": selection_s, "aggregation_s": aggregation_s - regen_s, "regen_s": regen_s,
           "attacker_selected": (n - 1) in order, "peak_rss_mb": peak_rss_mb(), "rss_by_phase_mb": rss.stop()}
    save_result(results, f"real-{n}-{store_kind}", out)


def _read_bytes() -> int:
    """Bytes this process has had read from storage (not from the page cache), all its threads."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes:"))


def _cached_gb() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Cached:")) / 2**20


def _drop_from_cache(folder: Path) -> None:
    """Every file in ``folder`` written to disk and dropped from the page cache (its own pages only: no root)."""
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def mean_error(mean: OrderedDict, global_arrays: OrderedDict, chosen: list[int], n: int) -> dict:
    """How far ``mean`` is from the mean of the chosen updates summed exactly (float64, regenerated block by block
    from their seeds), as a share of ``half_error_bound`` (≤ 1: within it) and in absolute terms, beside the float32
    rounding the exact mean itself gets (what today's float32 spill gives)."""
    from aggregator.protocol.updates import BLOCK, half_error_bound

    worst, largest, rounding = 0.0, 0.0, 0.0
    weights = [1 / len(chosen)] * len(chosen)
    for index, (name, g) in enumerate(global_arrays.items()):
        flat, base = np.ravel(mean[name]), np.ravel(g).astype(np.float64)
        for start in range(0, g.size, BLOCK):
            stop = min(g.size, start + BLOCK)
            total, bound = np.zeros(stop - start), np.zeros(stop - start)
            for i, w in zip(chosen, weights, strict=True):  # one step at a time: the check's memory stays small
                step = real_block(global_arrays, i, n, index, start, stop) - base[start:stop]
                total += step
                bound += half_error_bound([step], [w])  # the floor from the block's largest step: stricter
            exact = base[start:stop] + total / len(chosen)
            error = np.abs(flat[start:stop] - exact)
            bound += np.spacing(np.abs(exact).astype(np.float32))
            worst = max(worst, float(np.max(error / bound)))
            largest = max(largest, float(error.max()))
            rounding = max(rounding, float(np.abs(exact.astype(np.float32) - exact).max()))
    return {"error_over_bound": worst, "max_abs_error": largest, "float32_rounding": rounding}


def bench_aggregate(n: int, precision: str, results: Path, d: int) -> None:
    """The part of a round's work after the last reply that grows with m: the m = n/2 chosen real-size updates read
    back from their spill files and averaged, and the new global model serialized for Flower (the last reply's
    gate, Krum and the chain are measured by ``real`` and ``round``). The n updates are spilled first, in arrival
    order, as the intake keeps them, so the page cache holds what it holds after such a round; the mean is then
    timed as the kernel left the cache, and again with the files dropped from it (every byte from the disk).
    The chosen: m of the n − 1 honest ones, drawn with a fixed seed (Krum keeps the sign-flipper out)."""
    from aggregator.protocol.strategy import to_record

    rss = RssSampler()
    global_arrays = real_global(d)
    (CACHE / "spill").mkdir(parents=True, exist_ok=True)
    store = UpdateStore(global_arrays, CACHE / "spill", precision)
    rss.phase = "updates kept"
    make_s = put_s = put_cpu = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        update = real_update(global_arrays, i, n)
        t1, c1 = time.perf_counter(), cpu_seconds()
        store.put(i, update)
        make_s, put_s, put_cpu = make_s + t1 - t0, put_s + time.perf_counter() - t1, put_cpu + cpu_seconds() - c1
        del update
    m = n // 2
    chosen = sorted(int(i) for i in np.random.default_rng(0).choice(n - 1, m, replace=False))
    out = {"n": n, "m": m, "d": d, "precision": precision, "keep_per_reply_s": put_s / n,
           "keep_per_reply_cpu": put_cpu / n, "make_replies_s": make_s,
           "spilled_gb": sum(p.stat().st_size for p in store.dir.iterdir()) / 1e9, "runs": {}}
    for cache in ("as left", "cold"):
        if cache == "cold":
            _drop_from_cache(store.dir)
        rss.phase = f"aggregation ({cache})"
        cached, load, io0 = _cached_gb(), load_average(), _read_bytes()
        t0, c0 = time.perf_counter(), cpu_seconds()
        mean = store.mean(chosen)
        t1, c1, io1 = time.perf_counter(), cpu_seconds(), _read_bytes()
        rss.phase = "error check (not timed)"
        check = mean_error(mean, global_arrays, chosen, n) if cache == "cold" else {}
        rss.phase = f"aggregation ({cache})"
        t2, c2 = time.perf_counter(), cpu_seconds()
        record = to_record(mean)
        run = {"mean_s": t1 - t0, "serialize_s": time.perf_counter() - t2, "cpu": c1 - c0 + cpu_seconds() - c2,
               "read_from_disk_gb": (io1 - io0) / 1e9, "cached_gb_before": cached, "load_before": round(load, 1),
               "load_after": round(load_average(), 1), **check}
        run["wall"] = run["mean_s"] + run["serialize_s"]
        out["runs"][cache] = run
        del mean, record
        print(cache, json.dumps(run), flush=True)
    store.close()
    out["peak_rss_mb"], out["rss_by_phase_mb"] = peak_rss_mb(), rss.stop()
    save_result(results, f"aggregate-{n}-{precision}", out)
