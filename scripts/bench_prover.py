"""Benchmark the prover: build, prove and verify the statement for a few slice shapes, one subprocess per case
(so peak RSS is per case), and print a table.

    .venv/bin/python scripts/bench_prover.py                      # tiny (6,48,16), real (6,720,16), (6,720,32)
    .venv/bin/python scripts/bench_prover.py --case 6,720,32 --cols 2 --json out.json
    .venv/bin/python scripts/bench_prover.py --case 6,720,32 --evm      # + Solidity verifier on anvil

Values are random but realistic (weights at the 1/√H init scale, unit features, targets of variance ~2).
The SRS is a dev SRS (timings are the same as with the public one). Keys go to a fresh folder per case unless
--cache-dir is given, so "setup" is a real setup.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.evalkit import cpu_seconds, md_row, md_rule, peak_rss_mb, write_json  # noqa: E402

DEFAULT_CASES = ["6,48,16", "6,720,16", "6,720,32"]
COLUMNS = [
    ("case", "{}"), ("logrows", "{}"), ("cols", "{}"), ("rows used", "{:,}"), ("setup s", "{:.1f}"),
    ("prove s", "{:.1f}"), ("prove cpu s", "{:.1f}"), ("verify s", "{:.3f}"), ("verify cpu s", "{:.3f}"),
    ("proof bytes", "{:,}"),
    ("pk MB", "{:,.0f}"), ("vk KB", "{:,.0f}"), ("peak RSS MB", "{:,.0f}"), ("max abs loss error", "{:.1e}"),
]  # fmt: skip


def measure_evm(circuit, artifact, out: Path) -> dict:
    """Render and compile the reusable Solidity verifier, deploy it on anvil, register the VKA, verify the proof."""
    from eth_account import Account
    from web3 import Web3

    from contracts.local_chain import LocalChain
    from prover.evm import build_evm_verifier, evm_calldata

    evm = build_evm_verifier(circuit, out)
    with LocalChain() as chain:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        account = Account.from_key(chain.private_keys[0])

        def send(tx: dict) -> dict:
            tx = {**tx, "from": account.address, "nonce": w3.eth.get_transaction_count(account.address),
                  "chainId": w3.eth.chain_id, "gasPrice": w3.eth.gas_price}  # fmt: skip
            tx["gas"] = w3.eth.estimate_gas(tx)
            signed = account.sign_transaction(tx)
            return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))

        deployed = send({"data": evm.bytecode})
        contract = w3.eth.contract(address=deployed["contractAddress"], abi=evm.abi)
        registered = send({"to": contract.address, "data": contract.encode_abi("registerVka", [list(evm.vka)])})
        call = {"to": contract.address, "data": contract.encode_abi("verifyProof",
                                                                    evm_calldata(artifact, evm.vka).as_tuple())}
        ok = int.from_bytes(w3.eth.call(call)[:32], "big") == 1
        gas = w3.eth.estimate_gas(call)
    return {"evm runtime bytes": evm.runtime_size, "evm deploy gas": deployed["gasUsed"],
            "evm registerVka gas": registered["gasUsed"], "evm verifyProof gas": gas, "evm ok": ok,
            "vka words": len(evm.vka)}  # fmt: skip


def run_case(spec: str, cols: int | None, scale: int | None, cache_dir: str | None, with_evm: bool = False) -> dict:
    """Build, prove and verify one case in this process; return its measurements."""
    from prover import CircuitConfig, SliceShape, build_circuit, load_verifier, prove, verify
    from prover.statement import stack
    from prover.synthetic import synthetic_slice

    actions, hidden, rows = (int(v) for v in spec.split(","))
    shape = SliceShape(actions, hidden, rows)
    config = CircuitConfig()
    config = replace(config, num_inner_cols=cols or config.num_inner_cols, input_scale=scale or config.input_scale)
    config_label = "auto" if config.num_inner_cols is None else config.num_inner_cols
    with tempfile.TemporaryDirectory(prefix="zk0-bench-", dir=cache_dir) as tmp:
        started, cpu = time.perf_counter(), cpu_seconds()
        circuit = build_circuit(shape, "dev", tmp, config=config)
        setup_s, setup_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        slice_ = synthetic_slice(shape, seed=1)  # an honest-looking update: one gradient step
        w_g, b_g, w_n, b_n = slice_.W_g, slice_.b_g, slice_.W_n, slice_.b_n
        started, cpu = time.perf_counter(), cpu_seconds()
        artifact = prove(circuit, slice_)
        prove_s, prove_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        started = time.perf_counter()  # cold: commits the global and the node slice
        verdict = verify(artifact, load_verifier(circuit), w_g, b_g, w_n, b_n)
        verify_cold_s = time.perf_counter() - started
        verifier = load_verifier(circuit)
        verifier.commit(0, stack(w_g, b_g))  # a round's replies share the global slice's commitment
        started, cpu = time.perf_counter(), cpu_seconds()
        verify(artifact, verifier, w_g, b_g, w_n, b_n)
        verify_s, verify_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        evm = measure_evm(circuit, artifact, Path(tmp) / "evm") if with_evm else {}
        settings = json.loads(circuit.settings.read_text())
        before, after = slice_.losses()
        return {
            "case": f"A={actions} H={hidden} m={rows}", "logrows": circuit.logrows,
            "rows used": settings["num_rows"], "cols": settings["run_args"]["num_inner_cols"],
            "cols setting": config_label,
            "input_scale": config.input_scale,
            "setup s": setup_s, "setup cpu s": setup_cpu, "prove s": prove_s, "prove cpu s": prove_cpu,
            "verify s": verify_s, "verify cpu s": verify_cpu, "verify s (cold)": verify_cold_s,
            "verdict": verdict.reason or "ok", "proof bytes": len(artifact.proof),
            "pk MB": circuit.pk.stat().st_size / 1e6, "vk KB": circuit.vk.stat().st_size / 1e3,
            "peak RSS MB": peak_rss_mb(),  # the EZKL child's counted: it is where proving's memory goes
            "max abs loss error": max(abs(artifact.loss_before - before), abs(artifact.loss_after - after)),
            **evm,
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="A,H,m (repeatable); default: " + " ".join(DEFAULT_CASES))
    parser.add_argument("--cols", type=int, default=None, help="num_inner_cols (default: CircuitConfig's)")
    parser.add_argument("--scale", type=int, default=None, help="input_scale (default: CircuitConfig's)")
    parser.add_argument("--cache-dir", default=None, help="where keys are written (default: the system temp)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--evm", action="store_true", help="also deploy the Solidity verifier on anvil (gas, size)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.one:
        row = run_case(args.one, args.cols, args.scale, args.cache_dir, args.evm)
        print("BENCH " + json.dumps(row), flush=True)
        return
    rows = []
    for spec in args.case or DEFAULT_CASES:
        cmd = [sys.executable, __file__, "--one", spec]
        cmd += ["--cols", str(args.cols)] if args.cols else []
        cmd += ["--scale", str(args.scale)] if args.scale else []
        cmd += ["--evm"] if args.evm else []
        if args.cache_dir:
            cmd += ["--cache-dir", args.cache_dir]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "error"})
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if done.returncode != 0 or line is None:
            sys.exit(f"case {spec} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(line[6:]))
        print(f"done {spec}: prove {rows[-1]['prove s']:.1f} s", file=sys.stderr, flush=True)
    print(md_row(*(name for name, _ in COLUMNS)))
    print(md_rule(len(COLUMNS)))
    for row in rows:
        print(md_row(*(fmt.format(row[name]) for name, fmt in COLUMNS)))
    if args.evm:
        print("\n" + md_row("case", "verifier runtime bytes", "deploy gas", "registerVka gas", "verifyProof gas",
                            "accepted"))
        print(md_rule(6))
        for row in rows:
            print(md_row(row["case"], *(f"{row[k]:,}" for k in ("evm runtime bytes", "evm deploy gas",
                                                                 "evm registerVka gas", "evm verifyProof gas")),
                         row["evm ok"]))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
