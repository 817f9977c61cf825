"""Gas used by the ContributionRegistry's operations (records, circuits, stake, rewards, slashing), and deployed
code sizes, on a local anvil.

On-chain proof verification uses a real EZKL proof of the tiny test circuit (contracts/testing.py); zk0's
real circuit has more columns and lookups, so its verification costs more (STACK.md measured ~1.37 M gas).

    .venv/bin/python scripts/bench_chain.py     # prints a Markdown table (~30 s)
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account  # noqa: E402

from contracts import (  # noqa: E402
    Contribution,
    EvmProof,
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
        gas.append(("deploy ContributionRegistry (and its RewardToken)", deploy_gas))
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

        def contribution(round_: int, i: int, proof_hash: str = tiny.proof.proof_hash) -> Contribution:
            """The proof's own losses: recordContributionWithProof and slashBadProof check them."""
            return Contribution(round_, global_hash, "0x" + f"{i % 256:02x}" * 32, proof_hash, "0x" + "44" * 32,
                                before, after)  # fmt: skip

        def record(i: int, score: float = 0.0, **kwargs: object) -> int:
            c = contribution(1, i)
            signature = sign_contribution(nodes[i].key, c, chain.chain_id, agg.address)
            return agg.record_contribution(c, signature, Status.SELECTED, score=score, **kwargs)["gasUsed"]

        gas.append(("recordContribution (first of the round)", record(0)))
        gas.append(("recordContribution (next ones)", record(1)))
        gas.append(("recordContribution (SELECTED, positive score: adds to the round's total)", record(3, 0.1)))
        gas.append(("recordContributionWithProof (tiny circuit)", record(2, proof=tiny.proof)))
        rejection = agg.record_rejection(1, 12345, Reason.BAD_SIGNATURE, "0x" + "ee" * 32)
        gas.append(("recordRejection", rejection["gasUsed"]))
        gas.append(("closeRound", agg.close_round(1, "0x" + "99" * 32)["gasUsed"]))

        gas += incentives(owner, agg, nodes, contribution, tiny.proof, chain.chain_id)
        sizes = [
            ("ContributionRegistry", len(w3.eth.get_code(agg.address))),
            ("RewardToken", len(w3.eth.get_code(agg.token().address))),
            ("EZKL reusable verifier (tiny circuit)", len(w3.eth.get_code(verifier))),
            ("VkaStore (tiny circuit's VKA)", len(w3.eth.get_code(agg.circuit(circuit_id).vka_store))),
        ]
    return gas, sizes


def incentives(owner: Registry, agg: Registry, nodes: list, contribution, proof: EvmProof,
               chain_id: int) -> list[tuple[str, int]]:
    """Stake, close with rewards for 3, 10 and 100 SELECTED wallets, claim, unstake, slash."""
    gas: list[tuple[str, int]] = []
    gas.append(("setParams", owner.set_params(approval_required=False)["gasUsed"]))  # open: any wallet takes part
    staker = agg.with_sender(nodes[0].key)
    gas.append(("stake (first)", staker.stake(10**18)["gasUsed"]))
    gas.append(("stake (top-up)", staker.stake(10**18)["gasUsed"]))
    for round_, n in ((10, 3), (11, 10), (12, 100)):
        agg.open_round(round_, contribution(round_, 0).global_hash, agg.round_info(1).circuit_id)
        for i in range(n):
            wallet = Account.create()
            c = contribution(round_, i)
            agg.record_contribution(c, sign_contribution(wallet.key, c, chain_id, agg.address), Status.SELECTED,
                                    score=0.01 * (i + 1))  # fmt: skip
        gas.append((f"closeRound with rewards for {n} SELECTED wallets", agg.close_round(round_, "0x" + "99" * 32)
                    ["gasUsed"]))  # fmt: skip
        if n == 3:
            last = wallet.address
    gas.append(("claim (one round, mints the reward)", agg.claim(last, [10])["gasUsed"]))
    flipped = bytearray(proof.proof)
    flipped[200] ^= 1  # a tampered proof: the verifier runs and fails
    forged = EvmProof(bytes(flipped), proof.instances)
    agg.open_round(13, contribution(13, 0).global_hash, agg.round_info(1).circuit_id)
    c = contribution(13, 0, proof_hash=forged.proof_hash)
    signature = sign_contribution(nodes[0].key, c, chain_id, agg.address)
    gas.append(("slashBadProof (tampered proof: the verifier fails early; stake slashed, bounty paid)",
                agg.with_sender(nodes[1].key).slash_bad_proof(c, signature, forged)["gasUsed"]))  # fmt: skip
    liar = agg.with_sender(nodes[2].key)
    liar.stake(10**18)
    c = replace(contribution(13, 2), loss_before=999.0, loss_after=0.0)  # a valid proof of other losses
    signature = sign_contribution(nodes[2].key, c, chain_id, agg.address)
    gas.append(("slashBadProof (valid proof, other losses: a full verification fails)",
                agg.with_sender(nodes[1].key).slash_bad_proof(c, signature, proof)["gasUsed"]))  # fmt: skip
    gas.append(("requestUnstake", staker.request_unstake()["gasUsed"]))
    for round_ in range(14, 14 + owner.params().unstake_delay):
        agg.open_round(round_, contribution(round_, 0).global_hash, agg.round_info(1).circuit_id)
    gas.append(("withdrawStake", staker.withdraw_stake()["gasUsed"]))
    return gas


def markdown(gas: list[tuple[str, int]], sizes: list[tuple[str, int]]) -> str:
    lines = ["| operation | gas |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in gas]
    lines += ["", "| contract | runtime code | EIP-170 (24,576 B) |", "|---|---:|---|"]
    lines += [f"| {name} | {size:,} B | {'fits' if size <= EIP170_LIMIT else 'TOO BIG'} |" for name, size in sizes]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(markdown(*run_bench()))
