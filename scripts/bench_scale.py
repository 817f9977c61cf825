"""Benchmark one aggregator round at scale: n = 10, 100, 1,000 replies, tiny and real-size updates.

Parts (each a separate command, so every locked run stays under ten minutes; results accumulate in
``--results``, and ``--doc`` renders them into docs/benchmarks.md's "Scale" section):

- ``proofs --count N``: N distinct, really proven replies' proofs (the tiny statement circuit, A=6 H=48 m=16, dev
  SRS), each node's slice one gradient step from the same global slice on data of its own; cached under
  ``.zk0/scale/proofs``. Rounds with more replies than proofs cached reuse them in turn (distinct wallets,
  signatures and updates outside the slice); the verifier's commitment cache is cut to the global slice and one
  slice per worker, so every reply's slice is committed again, as a distinct proof's would be.
- ``round --n N``: one round of n replies at the tiny SmolVLA's dimension (194,976): the full gate (signature,
  freshness, integrity, EZKL proof, binding; no validation score: its cost is in "Validation gate") in the intake's
  worker pool, replies arriving all at once ("burst") and spread over a window ("spread"), the sketch, selection
  (exact Flower Multi-Krum and sketched), the streamed aggregation, and the round's chain work on anvil (its
  records journalled and sent by ``ChainSync`` in batched ``recordContributions`` transactions, then closeRound).
- ``real --n N``: the same round's memory and selection at the real SmolVLA's dimension (99,880,992), synthetic
  update vectors (1 sign-flipped of n), each reply made as Flower's pull leaves it (cut into Flower's chunks and
  inflated again) once the gate has room for it, as the ServerApp's arrival loop pulls; the structural gate
  (decode, finite, hash), sketch, spill, Krum on sketches, the blockwise mean and its serialization for Flower;
  peak RSS of the process (the replies' maker included). ``--store disk`` spills to files (n·400 MB of disk);
  ``--store regen`` keeps nothing and regenerates an update's block from its seed when it is read back (n = 100
  would need 40 GB of disk), so disk time is measured at n = 10 and scaled.
- ``agreement``: how often Multi-Krum on sketches selects differently from exact Multi-Krum on docs/security.md's
  update patterns, per sketch size.

    flock /work/heavy.lock .venv/bin/python scripts/bench_scale.py proofs --count 40
    flock /work/heavy.lock .venv/bin/python scripts/bench_scale.py round --n 100
    flock /work/heavy.lock .venv/bin/python scripts/bench_scale.py real --n 100 --store regen
    .venv/bin/python scripts/bench_scale.py doc
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import numpy as np  # noqa: E402

from aggregator.protocol.updates import UpdateStore  # noqa: E402
from scripts.bench_scale_doc import scale_section  # noqa: E402
from scripts.evalkit import cpu_seconds, peak_rss_mb, publish  # noqa: E402

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
CACHE = ROOT / ".zk0" / "scale"
TINY_D, REAL_D = 194_976, 99_880_992  # trainable parameters: tiny SmolVLA, full-size SmolVLA (docs/benchmarks.md)
SHAPE = (6, 48, 16)  # the tiny statement: A, H, m
DISTINCT_PROOFS = 100  # proofs made for the benchmark (fewer cached: replies reuse those there are)
RUN = "0x" + "5c" * 32  # the benchmark's run on the registry (nodes sign it)


class RssSampler:
    """Peak resident memory per phase of a run, sampled every 20 ms from /proc (ru_maxrss has only the overall peak)."""

    def __init__(self) -> None:
        import threading

        self.phase, self.peaks, self._stop = "start", {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {k: round(v) for k, v in self.peaks.items()}


def _load() -> float:
    return os.getloadavg()[0]


def _results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, key: str, value: dict) -> None:
    data = _results(path)
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    data[key] = {**value, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "load": round(_load(), 1),
                 "commit": commit.strip()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(json.dumps({key: data[key]}, indent=1))


# ------------------------------------------------------------------------------------------ the proven replies

def _circuit():
    from prover import build_circuit
    from prover.statement import SliceShape

    return build_circuit(SliceShape(*SHAPE), "dev", CACHE)


def global_slice() -> tuple[np.ndarray, np.ndarray]:
    from prover.statement import SliceShape
    from prover.synthetic import synthetic_slice

    s = synthetic_slice(SliceShape(*SHAPE), seed=0)
    return s.W_g, s.b_g


def node_slice(i: int):
    """Node i's statement inputs: its own features and targets, its slice one gradient step from the global one."""
    from prover import Slice

    a, h, m = SHAPE
    w_g, b_g = global_slice()
    rng = np.random.default_rng([7, i])
    x_g = rng.standard_normal((m, h)).astype(np.float32)
    x_n = x_g + 0.01 * rng.standard_normal((m, h)).astype(np.float32)
    y = (1.5 * rng.standard_normal((m, a))).astype(np.float32)
    residual = x_n @ w_g.T + b_g - y
    w_n = (w_g - 0.05 * residual.T @ x_n / m / np.sqrt(h)).astype(np.float32)
    b_n = (b_g - 0.05 * residual.mean(axis=0)).astype(np.float32)
    return Slice(w_g, b_g, w_n, b_n, x_g, x_n, y)


def build_proofs(count: int, results: Path) -> None:
    from prover import prove

    circuit = _circuit()
    out = CACHE / "proofs"
    out.mkdir(parents=True, exist_ok=True)
    made, wall, cpu = 0, 0.0, 0.0
    for i in range(count):
        path = out / f"{i}.bin"
        if path.exists():
            continue
        t0, c0 = time.perf_counter(), cpu_seconds()
        artifact = prove(circuit, node_slice(i))
        wall, cpu, made = wall + time.perf_counter() - t0, cpu + cpu_seconds() - c0, made + 1
        path.with_suffix(".part").write_bytes(artifact.to_bytes())
        path.with_suffix(".part").rename(path)
        print(f"proof {i}: {time.perf_counter() - t0:.1f} s", flush=True)
    have = len(list(out.glob("*.bin")))
    if made:
        prev = _results(results).get("proofs", {})
        n, w, c = prev.get("made", 0) + made, prev.get("wall", 0) + wall, prev.get("cpu", 0) + cpu
        _save(results, "proofs", {"made": n, "wall": w, "cpu": c, "cached": have, "circuit": circuit.circuit_id})
    print(f"{have} proofs cached in {out}")



# ----------------------------------------------------------------------------------- one round, tiny dimension

def _account(i: int):
    from eth_account import Account

    return Account.from_key(hashlib.sha256(b"zk0-bench-scale:" + str(i).encode()).digest())


def tiny_global() -> OrderedDict:
    from node.contribution import SLICE_BIAS, SLICE_WEIGHT

    a, h, _ = SHAPE
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((32, h)) / np.sqrt(h)).astype(np.float32)
    b = (0.1 * rng.standard_normal(32)).astype(np.float32)
    w[:a], b[:a] = global_slice()
    body = (0.02 * rng.standard_normal(TINY_D - w.size - b.size)).astype(np.float32)
    return OrderedDict([(SLICE_WEIGHT, w), (SLICE_BIAS, b), ("body", body)])


def _message(node_id: int, arrays: dict, contribution: dict | None = None):
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from node.params import pack

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 0, node_id  # outside a Flower runtime
    content = RecordDict({**pack(arrays),
                          "metrics": MetricRecord({"num-examples": 10, "train_loss": 1.0})})
    if contribution is not None:
        content["contribution"] = ConfigRecord(contribution)
    return Message(content, dst_node_id=0, message_type="train")


def cached_proofs() -> int:
    """How many proofs 0, 1, ... are cached (replies reuse them in turn)."""
    count = 0
    while (CACHE / "proofs" / f"{count}.bin").exists():
        count += 1
    return count


def tiny_replies(n: int, global_arrays: OrderedDict, global_hash: str, circuit, chain_id: int, registry: str):
    """n signed, proven replies: node i proves with proof i mod 100 (its slice), and differs outside the slice."""
    from aggregator.protocol.verification import registry_circuit_id
    from node.contribution import SLICE_BIAS, SLICE_WEIGHT, RoundTerms, contribution_record
    from prover import ProofArtifact

    a = SHAPE[0]
    terms = RoundTerms(RUN, 1, global_hash, circuit.circuit_id, registry_circuit_id(circuit), chain_id, registry,
                       SHAPE[2], circuit.srs.logrows)
    cached = cached_proofs()
    if not cached:
        raise SystemExit("no proofs cached: run `bench_scale.py proofs --count N` first")
    replies = []
    for i in range(n):
        p = i % cached
        path = CACHE / "proofs" / f"{p}.bin"
        artifact = ProofArtifact.from_bytes(path.read_bytes())
        s = node_slice(p)
        arrays = OrderedDict((k, v.copy()) for k, v in global_arrays.items())
        arrays[SLICE_WEIGHT][:a], arrays[SLICE_BIAS][:a] = s.W_n, s.b_n
        arrays["body"] += np.random.default_rng([9, i]).normal(0, 1e-3, arrays["body"].shape).astype(np.float32)
        replies.append(_message(i + 1, arrays, contribution_record(terms, arrays, artifact, _account(i))))
    return replies


def _gate_round(messages, ctx_of, store, sketch, workers: int, interval: float = 0.0):
    """Hand ``messages`` to a fresh intake, one every ``interval`` s (0: all at once); the gate's figures."""
    from aggregator.protocol.gate import VERIFIED_CHECKS, Gate
    from aggregator.protocol.intake import RoundIntake

    intake = RoundIntake(Gate(list(VERIFIED_CHECKS)), ctx_of(), [], store, sketch, workers)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for k, m in enumerate(messages):
        if interval:
            time.sleep(max(0.0, t0 + k * interval - time.perf_counter()))
        intake.submit(m)
    gated = intake.collect(messages)
    end = max(g.done_at for g in gated)
    statuses = sorted({g.outcome.status for g in gated})
    return gated, {"wall": end - t0, "cpu": cpu_seconds() - c0, "after_last_reply": end - intake.last_arrival,
                   "arrival_window": (len(messages) - 1) * interval, "statuses": statuses,
                   "verify_mean": float(np.mean([g.reply.verify_seconds or 0 for g in gated])),
                   "sketch_sum": sum(g.sketch_seconds for g in gated)}


def bench_round(n: int, workers: int, spread: bool, chain: bool, results: Path) -> None:
    from flwr.serverapp.strategy.multikrum import select_multikrum

    import prover.verify
    from aggregator.protocol.gate import RoundContext
    from aggregator.protocol.sketch import SKETCH_DIM, CountSketch, krum_order
    from aggregator.protocol.verification import LocalProofChecker
    from prover.hashing import params_hash

    circuit = _circuit()
    checker = LocalProofChecker(circuit)
    # The verifier caches slice commitments by content (64 of them); replies that reuse a proof (n > the proofs
    # cached) would hit it. Room for the global slice and one node slice per worker: every reply is committed.
    prover.verify._CACHE_SIZE = 1 + workers
    global_arrays = tiny_global()
    global_hash = params_hash(list(global_arrays.values()))
    local = registry = None
    if chain:
        local, registry = _chain()
    chain_id = registry.chain_id if registry else 31337
    address = registry.address if registry else "0x" + "5a" * 20
    t0 = time.perf_counter()
    messages = tiny_replies(n, global_arrays, global_hash, circuit, chain_id, address)
    build_s = time.perf_counter() - t0

    def ctx():
        return RoundContext(1, global_arrays, global_hash, chain_id=chain_id, registry=address, run_id=RUN,
                            is_approved=lambda a: True, verifier=checker)

    f, m = max(1, n // 10), max(1, n // 2)
    sketch = CountSketch(SKETCH_DIM, 12345, TINY_D)
    _ = sketch.codes
    out = {"n": n, "d": TINY_D, "workers": workers, "f": f, "m": m, "sketch_dim": SKETCH_DIM,
           "build_replies_s": build_s, "proofs_distinct": min(n, cached_proofs())}
    store = UpdateStore(global_arrays)
    gated, out["burst"] = _gate_round(messages, ctx, store, sketch, workers)
    per_reply = out["burst"]["wall"] / n
    out["proofs_per_s_per_core"] = n / out["burst"]["cpu"]
    if spread:  # replies arriving a little slower than the gate takes them: what a real round's spread gives
        store.close()
        store = UpdateStore(global_arrays)  # the same replies again, in a fresh round context
        gated, out["spread"] = _gate_round(messages, ctx, store, sketch, workers, interval=1.25 * per_reply)
    verified = [g for g in gated if g.outcome.status == "VERIFIED"]
    t0 = time.perf_counter()
    exact = select_multikrum([g.message.content for g in verified], num_malicious_nodes=f, num_nodes_to_select=m)
    out["selection_exact_s"] = time.perf_counter() - t0
    exact_keys = {id(c) for c in exact}
    t0 = time.perf_counter()
    order = krum_order(np.stack([g.sketch for g in verified]), f)[:m]
    out["selection_sketch_s"] = time.perf_counter() - t0
    sketched_keys = {id(verified[i].message.content) for i in order}
    out["selected_same"] = exact_keys == sketched_keys
    out["selected_overlap"] = len(exact_keys & sketched_keys) / m
    t0 = time.perf_counter()
    store.mean(verified[i].key for i in order)
    out["aggregation_s"] = time.perf_counter() - t0
    store.close()
    if registry is not None:
        from aggregator.protocol.verification import registry_circuit_id

        out["chain"] = _chain_records(registry, global_hash, registry_circuit_id(circuit), gated, set(order), local)
    out["peak_rss_mb"] = peak_rss_mb()
    _save(results, f"round-{n}", out)


def _chain():
    """anvil with a fresh registry, open to every wallet (approval off, no stake): what a round's records cost."""
    from eth_account import Account

    from contracts import LocalChain, Registry, connect

    local = LocalChain()
    local.start()
    owner, agg = local.private_keys[:2]
    registry = Registry.deploy(connect(local.rpc_url), owner, Account.from_key(agg).address)
    registry.set_params(approval_required=False)
    return local, Registry.at(connect(local.rpc_url), registry.address, agg)


def _chain_records(registry, global_hash: str, circuit_id: str, gated, selected: set, local) -> dict:
    """The round's chain work after the aggregation, as ``aggregator.protocol.verification`` does it: every
    outcome journalled (held), then the round committed: released, closeRound journalled, and the journal flushed
    by ``ChainSync`` (the signed records in ``recordContributions`` transactions of up to BATCH_SIZE, then
    closeRound). The round was opened before (at configure time: not in the figure)."""
    from aggregator.ledger.chain_sync import ChainSync
    from aggregator.ledger.journal import Journal
    from contracts import Reason, Status
    from contracts.registry import BATCH_SIZE

    with tempfile.TemporaryDirectory() as tmp:
        sync = ChainSync(registry, Journal(Path(tmp) / "journal.sqlite"), RUN)
        sync.open_round(1, global_hash, circuit_id)
        sync.flush()
        t0, c0 = time.perf_counter(), cpu_seconds()
        for k, g in enumerate(gated):
            status = Status.SELECTED if k in selected else Status.NOT_SELECTED
            sync.record(1, g.reply.address, g.reply.contribution, g.reply.signature, status, Reason.NONE,
                        g.outcome.node_id, score=0.001 * (k + 1))
        sync.release(1)
        sync.close_round(1, "0x" + "99" * 32)
        left = sync.flush()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        ops = sync.journal.all()
        receipts = {op.tx_hash: registry.w3.eth.get_transaction_receipt(op.tx_hash) for op in ops
                    if op.kind in ("record", "close") and op.tx_hash}
        record_txs = {op.tx_hash for op in ops if op.kind == "record" and op.tx_hash}
        close_gas = sum(r["gasUsed"] for h, r in receipts.items() if h not in record_txs)
    local.stop()
    record_gas = sum(receipts[h]["gasUsed"] for h in record_txs)
    return {"path": f"batched recordContributions (up to {BATCH_SIZE} a transaction) + closeRound, via ChainSync",
            "wall": wall, "cpu": cpu, "pending": left, "records": len(gated), "transactions": len(record_txs),
            "gas_total": record_gas or None, "close_gas": close_gas}


# ------------------------------------------------------------------------------------ one round, real dimension

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


def real_global() -> OrderedDict:
    from node.contribution import SLICE_BIAS, SLICE_WEIGHT

    rng = np.random.default_rng(2)
    w = (rng.standard_normal((32, 720), dtype=np.float32) / np.sqrt(720)).astype(np.float32)
    b = (0.1 * rng.standard_normal(32)).astype(np.float32)
    body = rng.standard_normal(REAL_D - w.size - b.size, dtype=np.float32)
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


def bench_real(n: int, store_kind: str, workers: int, results: Path) -> None:
    from aggregator.protocol.gate import STRUCTURAL_CHECKS, Gate, RoundContext
    from aggregator.protocol.intake import RoundIntake
    from aggregator.protocol.sketch import SKETCH_DIM, CountSketch, krum_order
    from aggregator.protocol.strategy import to_record
    from prover.hashing import params_hash

    rss = RssSampler()
    global_arrays = real_global()
    global_hash = params_hash(list(global_arrays.values()))
    ctx = RoundContext(1, global_arrays, global_hash)
    rss.phase = "sketch buckets"
    t0 = time.perf_counter()
    sketch = CountSketch(SKETCH_DIM, 12345, REAL_D)
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
        msg = as_pulled(_message(i + 1, real_update(global_arrays, i, n)))
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
    out = {"n": n, "d": REAL_D, "store": store_kind, "workers": workers, "f": f, "m": m, "sketch_dim": SKETCH_DIM,
           "codes_s": codes_s, "round_wall": end - t0, "round_cpu": cpu_seconds() - c0, "make_replies_s": make_s,
           "after_last_reply": end - intake.last_arrival,
           "gate_mean": float(np.mean([g.gate_seconds for g in gated])),
           "sketch_mean": float(np.mean([g.sketch_seconds for g in gated])),
           "store_mean": float(np.mean([g.store_seconds for g in gated])),
           "statuses": sorted({g.outcome.status for g in gated}),
           "selection_s": selection_s, "aggregation_s": aggregation_s - regen_s, "regen_s": regen_s,
           "attacker_selected": (n - 1) in order, "peak_rss_mb": peak_rss_mb(), "rss_by_phase_mb": rss.stop()}
    _save(results, f"real-{n}-{store_kind}", out)


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


def bench_aggregate(n: int, precision: str, results: Path) -> None:
    """The part of a round's work after the last reply that grows with m: the m = n/2 chosen real-size updates read
    back from their spill files and averaged, and the new global model serialized for Flower (the last reply's
    gate, Krum and the chain are measured by ``real`` and ``round``). The n updates are spilled first, in arrival
    order, as the intake keeps them, so the page cache holds what it holds after such a round; the mean is then
    timed as the kernel left the cache, and again with the files dropped from it (every byte from the disk).
    The chosen: m of the n − 1 honest ones, drawn with a fixed seed (Krum keeps the sign-flipper out)."""
    from aggregator.protocol.strategy import to_record

    rss = RssSampler()
    global_arrays = real_global()
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
    out = {"n": n, "m": m, "d": REAL_D, "precision": precision, "keep_per_reply_s": put_s / n,
           "keep_per_reply_cpu": put_cpu / n, "make_replies_s": make_s,
           "spilled_gb": sum(p.stat().st_size for p in store.dir.iterdir()) / 1e9, "runs": {}}
    for cache in ("as left", "cold"):
        if cache == "cold":
            _drop_from_cache(store.dir)
        rss.phase = f"aggregation ({cache})"
        cached, load, io0 = _cached_gb(), _load(), _read_bytes()
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
               "load_after": round(_load(), 1), **check}
        run["wall"] = run["mean_s"] + run["serialize_s"]
        out["runs"][cache] = run
        del mean, record
        print(cache, json.dumps(run), flush=True)
    store.close()
    out["peak_rss_mb"], out["rss_by_phase_mb"] = peak_rss_mb(), rss.stop()
    _save(results, f"aggregate-{n}-{precision}", out)


# ---------------------------------------------------------------------------------------- selection agreement

KINDS = ["sign-flip", "collude", "ipm", "free-rider-noise", "poison-shuffle"]


def bench_agreement(dims: list[int], trials: int, d: int, results: Path) -> None:
    """Multi-Krum (7 nodes, f = 1, m = 3) on sketches vs on full vectors, on docs/security.md's update patterns:
    how often the selected set differs, and how often the attackers in it differ."""
    from aggregator.protocol.sketch import CountSketch, krum_order, squared_distances
    from attacks.library import synthetic_updates

    stats = {dim: {"rounds": 0, "set_differs": 0, "attackers_differ": 0, "more_attackers": 0, "cut_gap_max": 0.0,
                   "score_err_max": 0.0} for dim in dims}
    sketches = {dim: CountSketch(dim, 0, d) for dim in dims}
    t0 = time.perf_counter()
    for kind in KINDS:
        for attackers in (2, 3) if kind == "collude" else (1, 2, 3):
            for t in range(trials):
                rng = np.random.default_rng([3, KINDS.index(kind), attackers, t])
                points = synthetic_updates(rng, d, 7 - attackers, kind, attackers)
                exact_order = krum_order(points, 1)
                exact_d = squared_distances(points)
                scores = sorted(np.sort(np.delete(exact_d[i], i))[:4].sum() for i in range(7))
                cut_gap = scores[3] / scores[2] - 1  # exact Krum's margin between the 3rd and 4th best
                bad = set(range(7 - attackers, 7))
                for dim in dims:
                    sk = sketches[dim]
                    sk.seed, sk._codes = int(rng.integers(2**62)), None  # a fresh round seed each time
                    sketched = np.stack([sk([p]) for p in points])
                    order = krum_order(sketched, 1)
                    st = stats[dim]
                    st["rounds"] += 1
                    st["set_differs"] += set(order[:3]) != set(exact_order[:3])
                    if (set(order[:3]) & bad) != (set(exact_order[:3]) & bad):
                        st["attackers_differ"] += 1
                        st["more_attackers"] += len(set(order[:3]) & bad) > len(set(exact_order[:3]) & bad)
                        st["cut_gap_max"] = max(st["cut_gap_max"], float(cut_gap))
                    iu = np.triu_indices(7, 1)
                    apart = exact_d[iu] > 1e-9 * exact_d[iu].max()  # identical replies (colluders) are 0 in both
                    err = np.abs(squared_distances(sketched)[iu][apart] / exact_d[iu][apart] - 1).max()
                    st["score_err_max"] = max(st["score_err_max"], float(err))
    _save(results, "agreement", {"d": d, "trials": trials, "n": 7, "f": 1, "m": 3, "seconds": time.perf_counter() - t0,
                                 "dims": {str(k): v for k, v in stats.items()}})



# --------------------------------------------------------------------------------------------------- the doc

def write_doc(results: Path, doc: Path) -> None:
    publish(scale_section(_results(results), TINY_D), doc, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["proofs", "round", "real", "aggregate", "agreement", "doc"])
    parser.add_argument("--count", type=int, default=DISTINCT_PROOFS)
    parser.add_argument("--results", type=Path, default=CACHE / "results.json")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-spread", action="store_true", help="round: only the burst (all replies at once)")
    parser.add_argument("--no-chain", action="store_true", help="round: skip the chain's records")
    parser.add_argument("--store", choices=["disk", "regen"], default="disk")
    parser.add_argument("--precision", choices=["float16", "float32"], default="float16",
                        help="aggregate: how the spilled updates are kept (float32: as before issue 35)")
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--d", type=int, default=500_000, help="agreement: update dimension")
    parser.add_argument("--real-d", type=int, default=REAL_D, help="real: update dimension (smaller: a quick try)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.part == "proofs":
        build_proofs(args.count, args.results)
    elif args.part == "round":
        bench_round(args.n, args.workers, not args.no_spread, not args.no_chain, args.results)
    elif args.part == "real":
        globals()["REAL_D"] = args.real_d
        bench_real(args.n, args.store, args.workers, args.results)
    elif args.part == "aggregate":
        globals()["REAL_D"] = args.real_d
        bench_aggregate(args.n, args.precision, args.results)
    elif args.part == "agreement":
        bench_agreement(args.dims, args.trials, args.d, args.results)
    else:
        write_doc(args.results, args.doc)


if __name__ == "__main__":
    main()
