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
import os
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import numpy as np  # noqa: E402

from aggregator.protocol.updates import UpdateStore  # noqa: E402
from scripts import bench_scale_real  # noqa: E402
from scripts.bench_scale_doc import scale_section  # noqa: E402
from scripts.evalkit import cpu_seconds, peak_rss_mb, publish  # noqa: E402
from scripts.scale_kit import CACHE, REAL_D, TINY_D, read_results, reply_message, save_result  # noqa: E402

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
SHAPE = (6, 48, 16)  # the tiny statement: A, H, m
DISTINCT_PROOFS = 100  # proofs made for the benchmark (fewer cached: replies reuse those there are)
RUN = "0x" + "5c" * 32  # the benchmark's run on the registry (nodes sign it)


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
        prev = read_results(results).get("proofs", {})
        n, w, c = prev.get("made", 0) + made, prev.get("wall", 0) + wall, prev.get("cpu", 0) + cpu
        save_result(results, "proofs", {"made": n, "wall": w, "cpu": c, "cached": have, "circuit": circuit.circuit_id})
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
        replies.append(reply_message(i + 1, arrays, contribution_record(terms, arrays, artifact, _account(i))))
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
    save_result(results, f"round-{n}", out)


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
    save_result(results, "agreement", {"d": d, "trials": trials, "n": 7, "f": 1, "m": 3,
                                       "seconds": time.perf_counter() - t0,
                                       "dims": {str(k): v for k, v in stats.items()}})



# --------------------------------------------------------------------------------------------------- the doc

def write_doc(results: Path, doc: Path) -> None:
    publish(scale_section(read_results(results), TINY_D), doc, START, END)


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
        bench_scale_real.bench_real(args.n, args.store, args.workers, args.results, args.real_d)
    elif args.part == "aggregate":
        bench_scale_real.bench_aggregate(args.n, args.precision, args.results, args.real_d)
    elif args.part == "agreement":
        bench_agreement(args.dims, args.trials, args.d, args.results)
    else:
        write_doc(args.results, args.doc)


if __name__ == "__main__":
    main()
