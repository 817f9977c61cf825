"""Gas used by the ContributionRegistry's operations, and deployed code sizes, on a local anvil.

On-chain proof verification uses a real EZKL proof of the tiny test circuit (contracts/testing.py); zk0's
real circuit has more columns and lookups, so its verification costs more (STACK.md measured ~1.37 M gas).

    .venv/bin/python scripts/bench_chain.py     # prints a Markdown table (~10 s)
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account  # noqa: E402

from contracts import (  # noqa: E402
    Contribution,
    LocalChain,
    Reason,
    Registry,
    Status,
    connect,
    load_artifact,
    sign_contribution,
)
from contracts.testing import deploy_contract, make_tiny_circuit  # noqa: E402

EIP170_LIMIT = 24_576


def run_bench() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Return ([(operation, gas)], [(contract, runtime bytes)])."""
    gas: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory() as scratch, LocalChain() as chain:
        tiny = make_tiny_circuit(scratch)
        w3 = connect(chain.rpc_url)
        owner_key, aggregator_key, *node_keys = chain.private_keys[:6]
        nodes = [Account.from_key(k) for k in node_keys]

        artifact = load_artifact("ContributionRegistry")
        aggregator = Account.from_key(aggregator_key).address
        address, deploy_gas = deploy_contract(w3, owner_key, artifact.abi, artifact.bytecode, aggregator)
        gas.append(("deploy ContributionRegistry", deploy_gas))
        owner = Registry.at(w3, address, owner_key)
        gas.append(("approveNode", owner.approve_node(nodes[0].address)["gasUsed"]))
        for node in nodes[1:]:
            owner.approve_node(node.address)
        verifier, verifier_gas = deploy_contract(w3, owner_key, tiny.verifier_abi, tiny.verifier_bytecode)
        gas.append(("deploy EZKL reusable verifier (tiny circuit)", verifier_gas))
        circuit_id = "0x" + "cc" * 32
        registered = owner.register_circuit(circuit_id, verifier, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
        gas.append((f"registerCircuit (VKA of {len(tiny.vka)} words)", registered["gasUsed"]))

        agg = owner.with_sender(aggregator_key)
        global_hash = "0x" + "11" * 32
        gas.append(("openRound", agg.open_round(1, global_hash, circuit_id)["gasUsed"]))
        before, after = (v / 2**s for v, s in zip(tiny.proof.instances, tiny.output_scales, strict=True))

        def contribution(i: int) -> Contribution:  # the proof's own losses: recordContributionWithProof checks them
            return Contribution(1, global_hash, "0x" + f"{i + 0x20:02x}" * 32, tiny.proof.proof_hash,
                                "0x" + "44" * 32, before, after)  # fmt: skip

        def record(i: int, **kwargs: object) -> int:
            c = contribution(i)
            signature = sign_contribution(nodes[i].key, c, chain.chain_id, agg.address)
            return agg.record_contribution(c, signature, Status.SELECTED, **kwargs)["gasUsed"]

        gas.append(("recordContribution (first of the round)", record(0)))
        gas.append(("recordContribution (next ones)", record(1)))
        gas.append(("recordContributionWithProof (tiny circuit)", record(2, proof=tiny.proof)))
        rejection = agg.record_rejection(1, 12345, Reason.BAD_SIGNATURE, "0x" + "ee" * 32)
        gas.append(("recordRejection", rejection["gasUsed"]))
        gas.append(("closeRound", agg.close_round(1, "0x" + "99" * 32)["gasUsed"]))

        sizes = [
            ("ContributionRegistry", len(w3.eth.get_code(agg.address))),
            ("EZKL reusable verifier (tiny circuit)", len(w3.eth.get_code(verifier))),
            ("VkaStore (tiny circuit's VKA)", len(w3.eth.get_code(agg.circuit(circuit_id).vka_store))),
        ]
    return gas, sizes


def markdown(gas: list[tuple[str, int]], sizes: list[tuple[str, int]]) -> str:
    lines = ["| operation | gas |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in gas]
    lines += ["", "| contract | runtime code | EIP-170 (24,576 B) |", "|---|---:|---|"]
    lines += [f"| {name} | {size:,} B | {'fits' if size <= EIP170_LIMIT else 'TOO BIG'} |" for name, size in sizes]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(markdown(*run_bench()))
