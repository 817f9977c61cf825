"""Gas used by the ContributionRegistry's operations (records, circuits, stake, rewards, slashing), deployed code
sizes, and the gas of a round's records as ChainSync sends them (batched) for 3, 10, 100 and 1,000 nodes, on a local
anvil.

On-chain proof verification uses a real EZKL proof of the tiny test circuit (contracts/testing.py); zk0's
real circuit has more columns and lookups, so its verification costs more (STACK.md measured ~1.37 M gas).

    .venv/bin/python scripts/bench_chain.py              # prints Markdown tables (a few minutes: 1,113 wallets)
    .venv/bin/python scripts/bench_chain.py --scale 3 10  # a quick look
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
    Entry,
    EvmProof,
    LocalChain,
    Reason,
    Registry,
    Status,
    connect,
    load_artifact,
    sign_contribution,
)
from contracts.registry import BATCH_SIZE, DEFAULT_PARAMS_DELAY  # noqa: E402
from contracts.testing import advance_time, deploy_contract, make_tiny_circuit  # noqa: E402

EIP170_LIMIT = 24_576


RUN = "0x" + "a1" * 32  # the benchmark's run on the registry
SCALE = (3, 10, 100, 1000)  # records per round for the batched-recording table


def run_bench(scale: tuple[int, ...] = SCALE) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[dict]]:
    """Return ([(operation, gas)], [(contract, runtime bytes)], [per-round rows of the scale table])."""
    gas: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory() as scratch, LocalChain() as chain:
        tiny = make_tiny_circuit(scratch)
        w3 = connect(chain.rpc_url)
        owner_key, aggregator_key, *node_keys = chain.private_keys[:6]
        nodes = [Account.from_key(k) for k in node_keys]

        artifact = load_artifact("ContributionRegistry")
        aggregator = Account.from_key(aggregator_key).address
        address, deploy_gas = deploy_contract(w3, owner_key, artifact.abi, artifact.bytecode, aggregator,
                                             DEFAULT_PARAMS_DELAY)
        gas.append(("deploy ContributionRegistry (and its RewardToken)", deploy_gas))
        owner = Registry.at(w3, address, owner_key)
        gas.append(("approveNode", owner.approve_node(nodes[0].address)["gasUsed"]))
        for node in nodes[1:]:
            owner.approve_node(node.address)
        verifier, verifier_gas = deploy_contract(w3, owner_key, tiny.verifier_abi, tiny.verifier_bytecode)
        gas.append(("deploy EZKL reusable verifier (tiny circuit)", verifier_gas))
        circuit_id, registered = owner.register_circuit(verifier, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
        gas.append((f"registerCircuit (VKA of {len(tiny.vka)} words)", registered["gasUsed"]))

        agg = owner.with_sender(aggregator_key)
        global_hash = "0x" + "11" * 32
        gas.append(("openRound (the run's first: registers the run)", agg.open_round(RUN, 1, global_hash,
                                                                                       circuit_id)["gasUsed"]))
        before, after = (v / 2**s for v, s in zip(tiny.proof.instances, tiny.output_scales, strict=True))

        def contribution(round_: int, i: int, proof_hash: str | None = None, run: str = RUN) -> Contribution:
            """The proof's own losses: recordContributionWithProof and slashBadProof check them. Each piece of work
            its own proof hash unless given (the registry records one piece of work once a round)."""
            proof_hash = proof_hash or f"0x{(round_ << 32) + i + 1:064x}"
            return Contribution(run, round_, global_hash, "0x" + f"{i % 256:02x}" * 32, proof_hash, "0x" + "44" * 32,
                                before, after, circuit_id)  # fmt: skip

        def record(i: int, score: float = 0.0, **kwargs: object) -> int:
            proof = kwargs.get("proof")
            c = contribution(1, i, proof_hash=proof.proof_hash if proof is not None else None)
            signature = sign_contribution(nodes[i].key, c, chain.chain_id, agg.address)
            return agg.record_contribution(c, signature, Status.SELECTED, score=score, **kwargs)["gasUsed"]

        gas.append(("recordContributions, one record (NOT the way ChainSync sends a round: see the scale table)",
                    record(0)))
        gas.append(("recordContributions, one record, SELECTED with a positive score (first of the round)",
                    record(1, 0.1)))
        gas.append(("recordContributionWithProof (tiny circuit)", record(2, proof=tiny.proof)))
        rejection = agg.record_rejection(RUN, 1, 12345, Reason.BAD_SIGNATURE, "0x" + "ee" * 32)
        gas.append(("recordRejection", rejection["gasUsed"]))
        gas.append(("closeRound", agg.close_round(RUN, 1, "0x" + "99" * 32)["gasUsed"]))
        gas.append(("openRound (a later round of the run)", agg.open_round(RUN, 2, global_hash, circuit_id)["gasUsed"]))

        gas += incentives(owner, agg, nodes, contribution, tiny.proof, chain.chain_id)
        rows = [scale_round(owner, agg, n, round_, global_hash, circuit_id, chain.chain_id)
                for round_, n in enumerate(scale, start=100)]
        sizes = [
            ("ContributionRegistry", len(w3.eth.get_code(agg.address))),
            ("RewardToken", len(w3.eth.get_code(agg.token().address))),
            ("EZKL reusable verifier (tiny circuit)", len(w3.eth.get_code(verifier))),
            ("VkaStore (tiny circuit's VKA)", len(w3.eth.get_code(agg.circuit(circuit_id).vka_store))),
        ]
    return gas, sizes, rows


def scale_round(owner: Registry, agg: Registry, n: int, round_: int, global_hash: str, circuit_id: str,
                chain_id: int) -> dict:
    """One round of `n` approved wallets, all SELECTED with a weight (the dearest outcome: it adds to the round's
    weight total), recorded as ChainSync sends them: recordContributions in batches of BATCH_SIZE."""
    wallets = [Account.create() for _ in range(n)]
    for wallet in wallets:  # a permissioned federation: the owner approved each wallet (one more cold slot read)
        owner.approve_node(wallet.address)
    opened = agg.open_round(RUN, round_, global_hash, circuit_id)["gasUsed"]
    entries = []
    for i, wallet in enumerate(wallets):
        c = Contribution(RUN, round_, global_hash, "0x" + f"{i:064x}", f"0x{(round_ << 32) + i + 1:064x}",
                         "0x" + "44" * 32, 0.5, 0.4, circuit_id)
        entries.append(Entry(c, sign_contribution(wallet.key, c, chain_id, agg.address), Status.SELECTED,
                             score=0.001 * (i + 1), weight=1 / n))
    recorded = [agg.record_contributions(RUN, round_, entries[i:i + BATCH_SIZE])["gasUsed"]
                for i in range(0, n, BATCH_SIZE)]
    closed = agg.close_round(RUN, round_, "0x" + "99" * 32)["gasUsed"]
    claim = agg.claim(wallets[0].address, [agg.get_record(RUN, round_, wallets[0].address)])["gasUsed"]
    return {"records": n, "transactions": len(recorded), "record_gas": sum(recorded), "open": opened,
            "close": closed, "claim": claim}


def incentives(owner: Registry, agg: Registry, nodes: list, contribution, proof: EvmProof,
               chain_id: int) -> list[tuple[str, int]]:
    """Stake, claim, unstake, slash."""
    gas: list[tuple[str, int]] = []
    scheduled = owner.set_params(approval_required=False)["gasUsed"]
    gas.append(("setParams (scheduled: applies paramsDelay later)", scheduled))
    advance_time(owner.w3, owner.params_delay())  # open: any wallet takes part
    staker = agg.with_sender(nodes[0].key)
    gas.append(("stake (first)", staker.stake(10**18)["gasUsed"]))
    gas.append(("stake (top-up)", staker.stake(10**18)["gasUsed"]))
    circuit_id = agg.round_info(RUN, 1).circuit_id
    agg.open_round(RUN, 10, contribution(10, 0).global_hash, circuit_id)
    wallets = [Account.create() for _ in range(3)]
    agg.record_contributions(RUN, 10, [
        Entry(c, sign_contribution(w.key, c, chain_id, agg.address), Status.SELECTED, score=0.01 * (i + 1),
              weight=(i + 1) / 6)
        for i, w in enumerate(wallets) for c in [contribution(10, i)]])
    agg.close_round(RUN, 10, "0x" + "99" * 32)
    last = wallets[-1].address
    gas.append(("claim (one record, mints the reward)", agg.claim(last, [agg.get_record(RUN, 10, last)])["gasUsed"]))
    flipped = bytearray(proof.proof)
    flipped[200] ^= 1  # a tampered proof: the verifier runs and fails
    forged = EvmProof(bytes(flipped), proof.instances)
    agg.open_round(RUN, 13, contribution(13, 0).global_hash, circuit_id)
    c = contribution(13, 0, proof_hash=forged.proof_hash)
    signature = sign_contribution(nodes[0].key, c, chain_id, agg.address)
    gas.append(("slashBadProof after commitSlash (tampered proof: the verifier fails early; stake slashed, bounty)",
                agg.with_sender(nodes[1].key).slash_bad_proof(c, signature, forged)["gasUsed"]))  # fmt: skip
    liar = agg.with_sender(nodes[2].key)
    liar.stake(10**18)
    c = replace(contribution(13, 2, proof_hash=proof.proof_hash), loss_before=999.0, loss_after=0.0)  # other losses
    signature = sign_contribution(nodes[2].key, c, chain_id, agg.address)
    gas.append(("slashBadProof (valid proof, other losses: a full verification fails)",
                agg.with_sender(nodes[1].key).slash_bad_proof(c, signature, proof)["gasUsed"]))  # fmt: skip
    gas.append(("requestUnstake", staker.request_unstake()["gasUsed"]))
    advance_time(owner.w3, owner.params().unstake_delay)
    gas.append(("withdrawStake", staker.withdraw_stake()["gasUsed"]))
    owner.set_params(approval_required=True)
    advance_time(owner.w3, owner.params_delay())
    return gas


def markdown(gas: list[tuple[str, int]], sizes: list[tuple[str, int]], rows: list[dict]) -> str:
    lines = ["| operation | gas |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in gas]
    lines += ["", "| contract | runtime code | EIP-170 (24,576 B) |", "|---|---:|---|"]
    lines += [f"| {name} | {size:,} B | {'fits' if size <= EIP170_LIMIT else 'TOO BIG'} |" for name, size in sizes]
    lines += ["", "| records per round | recordContributions transactions | gas per record | "
              "gas per node-round (open + records + close) | open | close | claim (one record) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = r["records"]
        lines.append(f"| {n:,} | {r['transactions']} | {r['record_gas'] / n:,.0f} | "
                     f"{(r['open'] + r['record_gas'] + r['close']) / n:,.0f} | {r['open']:,} | {r['close']:,} | "
                     f"{r['claim']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, nargs="+", default=list(SCALE), help="records per round to measure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(markdown(*run_bench(tuple(args.scale))))
