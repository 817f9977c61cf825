"""Invariants of the ContributionRegistry under random sequences of what every role can do (issue 30, item 7).

A Hypothesis stateful test drives the real contract on anvil with the tiny circuit's real EZKL proofs: nodes stake,
leave and withdraw; the aggregator opens rounds, records replies with random outcomes and weights, and closes them;
anyone slashes with honest or forged proofs and claims rewards; the owner changes the parameters (within the caps
or not); time passes. After every step:

- an honest proof was never slashed (every attempt reverted ProofValid, the stake untouched);
- stake is accounted for: the contract holds exactly totalStaked + totalBurned wei, and totalStaked is the sum of
  the wallets' stakes;
- a closed round never pays more than its emission (the sum of what its records earn);
- a record never changes once written (its stored hash is the one first seen);
- the owner's parameters stay within the caps (slash, bounty at most 50 %, unstake delay at most 30 days).

Bounded (a few examples of a few steps each) so that it runs in ``make test``; ``ZK0_INVARIANT_EXAMPLES`` runs more.
"""

from __future__ import annotations

import itertools
import os

import pytest
from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from contracts import ChainError, Contribution, EvmProof, Registry, Status, connect, sign_contribution
from contracts.records import MAX_BOUNTY_BPS, MAX_SLASH_BPS, MAX_UNSTAKE_DELAY, earned
from contracts.testing import advance_time

pytestmark = pytest.mark.integration

ETH = 10**18
GLOBAL = "0x" + "11" * 32
EXAMPLES = int(os.environ.get("ZK0_INVARIANT_EXAMPLES", "4"))
_runs = itertools.count(1)


def test_registry_invariants_hold_under_random_operations(chain, keys, tiny_circuit, verifier):
    w3 = connect(chain.rpc_url)
    wallets = [*keys["nodes"], *keys["spare"]]

    class Registry_(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            owner = Registry.deploy(w3, keys["owner"], Account.from_key(keys["aggregator"]).address)
            owner.set_params(min_stake=ETH // 10, approval_required=False, unstake_delay=3_600)
            self.owner, self.agg = owner, owner.with_sender(keys["aggregator"])
            self.circuit, _ = owner.register_circuit(verifier.address, tiny_circuit.vka,
                                                     len(tiny_circuit.proof.proof), tiny_circuit.output_scales)
            self.run = f"0x{next(_runs):064x}"
            self.round = 0
            self.open = False
            self.work = itertools.count(1)
            self.records: dict[tuple[int, str], str] = {}  # (round, node) -> stored hash when first seen
            self.closed: list[int] = []

        # ------------------------------------------------------------------ helpers
        def contribution(self, round_: int, proof: EvmProof) -> Contribution:
            (before, after), (s_b, s_a) = tiny_circuit.proof.instances, tiny_circuit.output_scales
            work = next(self.work)
            return Contribution(self.run, round_, GLOBAL, f"0x{work:064x}", proof.proof_hash, "0x" + "44" * 32,
                                before / 2**s_b, after / 2**s_a, self.circuit)

        def forged(self) -> EvmProof:
            flipped = bytearray(tiny_circuit.proof.proof)
            flipped[200] ^= 1
            return EvmProof(bytes(flipped), tiny_circuit.proof.instances)

        # ------------------------------------------------------------------ nodes
        @rule(who=st.sampled_from(range(6)), tenths=st.integers(1, 20))
        def stake(self, who: int, tenths: int) -> None:
            node = self.agg.with_sender(wallets[who])
            if node.stake_of(node.sender.address).exiting:
                return
            node.stake(tenths * ETH // 10)

        @rule(who=st.sampled_from(range(6)))
        def leave(self, who: int) -> None:
            node = self.agg.with_sender(wallets[who])
            info = node.stake_of(node.sender.address)
            if info.amount and not info.exiting:
                node.request_unstake()

        @rule(who=st.sampled_from(range(6)))
        def withdraw(self, who: int) -> None:
            node = self.agg.with_sender(wallets[who])
            info = node.stake_of(node.sender.address)
            if not info.exiting:
                return
            try:
                receipt = node.withdraw_stake()
            except ChainError as err:
                assert err.error_name == "UnstakeLocked", str(err)
                return
            mined = w3.eth.get_block(receipt["blockNumber"])["timestamp"]
            assert mined >= info.unlock_at, "a stake left before its unlock time"

        @rule(seconds=st.sampled_from([60, 1_800, 3_600, 86_400]))
        def wait(self, seconds: int) -> None:
            advance_time(w3, seconds)

        # ------------------------------------------------------------------ aggregator
        @precondition(lambda self: not self.open)
        @rule()
        def open_round(self) -> None:
            self.round += 1
            self.agg.open_round(self.run, self.round, GLOBAL, self.circuit)
            self.open = True

        @precondition(lambda self: self.open)
        @rule(outcomes=st.lists(st.tuples(st.sampled_from(range(6)), st.sampled_from(["SELECTED", "NOT_SELECTED"]),
                                          st.integers(0, 10)), min_size=1, max_size=4, unique_by=lambda t: t[0]))
        def record(self, outcomes) -> None:
            for who, status, tenth in outcomes:
                address = Account.from_key(wallets[who]).address
                if (self.round, address) in self.records or not self.agg.is_approved(address):
                    continue
                c = self.contribution(self.round, tiny_circuit.proof)
                weight = tenth / 10 if status == "SELECTED" else 0.0
                self.agg.record_contribution(c, sign_contribution(wallets[who], c, w3.eth.chain_id, self.agg.address),
                                             Status[status], weight=weight, score=0.1)
                self.records[(self.round, address)] = self.agg.record_hash(self.run, self.round, address)

        @precondition(lambda self: self.open)
        @rule()
        def close_round(self) -> None:
            self.agg.close_round(self.run, self.round, "0x" + "99" * 32)
            self.open = False
            self.closed.append(self.round)

        # ------------------------------------------------------------------ anyone
        @precondition(lambda self: self.round > 0)
        @rule(who=st.sampled_from(range(6)), honest=st.booleans())
        def slash(self, who: int, honest: bool) -> None:
            proof = tiny_circuit.proof if honest else self.forged()
            c = self.contribution(self.round, proof)
            signature = sign_contribution(wallets[who], c, w3.eth.chain_id, self.agg.address)
            address = Account.from_key(wallets[who]).address
            stake = self.agg.stake_of(address).amount
            slasher = self.agg.with_sender(keys["stranger"])
            try:
                slasher.slash_bad_proof(c, signature, proof)
                assert not honest, "an honest proof was slashed"
                assert self.agg.stake_of(address).amount == stake - stake * self.agg.params().slash_bps // 10_000
            except ChainError as err:
                allowed = ("ProofValid", "NotAParticipant") if honest else ("NotAParticipant",)
                assert err.error_name in allowed, str(err)
                assert self.agg.stake_of(address).amount == stake

        @rule(who=st.sampled_from(range(6)))
        def claim(self, who: int) -> None:
            address = Account.from_key(wallets[who]).address
            if self.agg.pending_rewards(address)[0]:
                self.agg.claim(address)

        # ------------------------------------------------------------------ owner
        @rule(slash=st.integers(0, 10_000), bounty=st.integers(0, 10_000), delay=st.integers(0, 2 * MAX_UNSTAKE_DELAY),
              emission=st.integers(0, 200))
        def set_params(self, slash: int, bounty: int, delay: int, emission: int) -> None:
            within = slash <= MAX_SLASH_BPS and bounty <= MAX_BOUNTY_BPS and delay <= MAX_UNSTAKE_DELAY
            raw = self.owner.contract.functions.setParams((ETH // 10, emission * ETH, slash, bounty, delay, False))
            try:
                self.owner._send(raw, "setParams")
                assert within, "the owner set parameters over the caps"
            except ChainError as err:
                assert not within and err.error_name == "InvalidParams", str(err)

        # ------------------------------------------------------------------ invariants
        @invariant()
        def stake_is_accounted_for(self) -> None:
            staked = sum(self.agg.stake_of(Account.from_key(k).address).amount for k in wallets)
            assert self.agg.total_staked() == staked
            assert w3.eth.get_balance(self.agg.address) == staked + self.agg.total_burned()

        @invariant()
        def records_never_change(self) -> None:
            for (round_, node), stored in self.records.items():
                assert self.agg.record_hash(self.run, round_, node) == stored

        @invariant()
        def a_round_pays_at_most_its_emission(self) -> None:
            for round_ in self.closed[-2:]:
                info = self.agg.round_info(self.run, round_)
                weight_total = round(info.weight_total * 10**9)  # fixed point, as the contract keeps it
                total = sum(earned(info.emission, r.chain[-1], weight_total)
                            for r in self.agg.round_records(self.run, round_))
                assert total <= info.emission

        @invariant()
        def parameters_within_the_caps(self) -> None:
            p = self.agg.params()
            assert p.slash_bps <= MAX_SLASH_BPS and p.bounty_bps <= MAX_BOUNTY_BPS
            assert p.unstake_delay <= MAX_UNSTAKE_DELAY

    run_state_machine_as_test(Registry_, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=12, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
