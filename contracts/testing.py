"""Helpers for tests and benchmarks of the chain side: a tiny EZKL circuit with its reusable EVM verifier.

The circuit (y = x · w, 2×4 · 4×1, committed inputs, public outputs) is unrelated to zk0's statement: it
only gives the registry a real verifier, VKA and proof to check, in a few seconds. Its SRS comes from `gen_srs`,
whose maker knows the trapdoor: tests only.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from web3 import Web3

from contracts.evm_proof import EvmProof, read_vka
from contracts.solc import compile_standard

VERIFIER_CONTRACT = "Halo2VerifierReusable"


@dataclass(frozen=True)
class TinyCircuit:
    verifier_abi: list[dict]
    verifier_bytecode: str
    verifier_code_size: int  # runtime bytes
    vka: list[bytes]
    proof: EvmProof
    output_scales: tuple[int, int]  # fixed-point scales of the two public outputs (registerCircuit's)
    workdir: Path


def _tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _run(async_fn, *args: object) -> object:
    """Run one of ezkl's async functions (they need a running event loop to start)."""

    async def call() -> object:
        return await async_fn(*args)

    return asyncio.run(call())


def make_tiny_circuit(workdir: str | Path, scale: int = 8) -> TinyCircuit:
    """Build, set up and prove the tiny circuit in `workdir`; render and compile its reusable verifier.

    Another `scale` (fixed-point bits of the inputs) gives another circuit: another verifying key.
    """
    import ezkl

    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    _tiny_onnx(d / "tiny.onnx")
    (d / "input.json").write_text(
        json.dumps({"input_data": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.25, -0.5, 0.75, 1.0]]})
    )
    args = ezkl.PyRunArgs()
    args.input_visibility = "polycommit"
    args.output_visibility = "public"
    args.param_visibility = "fixed"
    args.input_scale = args.param_scale = scale
    args.decomp_base, args.decomp_legs = 128, 4  # small range-check tables: a small circuit (fast SRS/setup)
    args.logrows = 10
    p = {name: str(d / name) for name in ("tiny.onnx", "input.json", "settings.json", "tiny.ezkl", "kzg.srs",
                                          "vk.key", "pk.key", "witness.json", "proof.json", "Verifier.sol",
                                          "verifier_abi.json", "vka.bytes")}  # fmt: skip
    ezkl.gen_settings(p["tiny.onnx"], p["settings.json"], py_run_args=args)
    ezkl.compile_circuit(p["tiny.onnx"], p["tiny.ezkl"], p["settings.json"])
    logrows = json.loads((d / "settings.json").read_text())["run_args"]["logrows"]
    ezkl.gen_srs(p["kzg.srs"], logrows)
    ezkl.setup(p["tiny.ezkl"], p["vk.key"], p["pk.key"], p["kzg.srs"])
    ezkl.gen_witness(p["input.json"], p["tiny.ezkl"], p["witness.json"])
    ezkl.prove(p["witness.json"], p["tiny.ezkl"], p["pk.key"], p["proof.json"], p["kzg.srs"])
    # create_evm_verifier writes the .sol, then fails trying to download solc into $HOME/.svm (STACK.md):
    # point HOME at the scratch folder meanwhile, and compile the .sol ourselves.
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(d)
    try:
        _run(ezkl.create_evm_verifier, p["vk.key"], p["settings.json"], p["Verifier.sol"],
             p["verifier_abi.json"], p["kzg.srs"], True)  # fmt: skip
    except Exception:
        if not (d / "Verifier.sol").exists():
            raise
    finally:
        if home is not None:
            os.environ["HOME"] = home
    _run(ezkl.create_evm_vka, p["vk.key"], p["settings.json"], p["vka.bytes"], p["kzg.srs"])
    scales = json.loads((d / "settings.json").read_text())["model_output_scales"] * 2  # one output, two rows
    compiled = compile_standard({"Verifier.sol": (d / "Verifier.sol").read_text()})
    verifier = compiled["contracts"]["Verifier.sol"][VERIFIER_CONTRACT]
    return TinyCircuit(
        verifier_abi=verifier["abi"],
        verifier_bytecode="0x" + verifier["evm"]["bytecode"]["object"],
        verifier_code_size=len(verifier["evm"]["deployedBytecode"]["object"]) // 2,
        vka=read_vka(d / "vka.bytes"),
        proof=EvmProof.from_ezkl(d / "proof.json"),
        output_scales=(scales[0], scales[1]),
        workdir=d,
    )


def deploy_contract(w3: Web3, key: str, abi: list[dict], bytecode: str, *args: object) -> tuple[str, int]:
    """Deploy any contract from `key`'s account; return (address, gas used)."""
    account = Account.from_key(key)
    tx = (
        w3.eth.contract(abi=abi, bytecode=bytecode)
        .constructor(*args)
        .build_transaction({"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")})
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    )
    if receipt["status"] != 1:
        raise RuntimeError("contract deployment reverted")
    return receipt["contractAddress"], receipt["gasUsed"]


def advance_time(w3: Web3, seconds: int) -> None:
    """Move a local anvil chain's clock forward (and mine a block at the new time): delays elapse in tests."""
    w3.provider.make_request("evm_increaseTime", [int(seconds)])
    w3.provider.make_request("evm_mine", [])
