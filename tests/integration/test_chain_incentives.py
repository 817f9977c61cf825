"""Incentives on a real anvil with real EZKL proofs: stake to join, rewards by positive score, trustless slashing
of a signed bad proof (issue 12). `pytest -k "stake or reward or slash"` selects them."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from contracts import ChainError, Contribution, EvmProof, Reason, Registry, Status, connect
from contracts import sign_contribution as sign

pytestmark = pytest.mark.integration

GLOBAL = "0x" + "11" * 32
RUN = "0x" + "a1" * 32
TINY = "0x" + "7c" * 32
ETH = 10**18
EMISSION = 90 * ETH
_rounds = itertools.count(1)


# chain (one anvil), keys (by role) and verifier (the tiny circuit's, deployed once): tests/integration/conftest.py
@pytest.fixture(scope="module")
def node_count() -> int:
    """Four node wallets: keys["nodes"] is wallets 2-5, the stranger wallet 6, the spares 7-9."""
    return 4


@pytest.fixture(scope="module")
def tiny(tiny_circuit):
    return tiny_circuit


def deploy(chain, keys, tiny, verifier) -> Registry:
    """A permissionless registry (1 ETH to join) that verifies the tiny circuit; seen from the aggregator."""
    owner = Registry.deploy(connect(chain.rpc_url), keys["owner"], Account.from_key(keys["aggregator"]).address)
    owner.set_params(min_stake=ETH, emission_per_round=EMISSION, slash_bps=5_000, bounty_bps=5_000,
                     unstake_delay=2, approval_required=False)  # fmt: skip
    owner.register_circuit(TINY, verifier.address, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
    return owner.with_sender(keys["aggregator"])


@pytest.fixture(scope="module")
def registry(chain, keys, tiny, verifier):
    """Four nodes that staked 1 ETH each."""
    agg = deploy(chain, keys, tiny, verifier)
    for key in keys["nodes"]:
        agg.with_sender(key).stake(ETH)
    return agg


def expect_revert(error: str, action) -> ChainError:
    with pytest.raises(ChainError) as caught:
        action()
    assert caught.value.error_name == error, str(caught.value)
    return caught.value


def open_round(registry: Registry) -> int:
    number = next(_rounds)
    registry.open_round(RUN, number, GLOBAL, TINY)
    return number


def contribution(tiny, round_: int, proof: EvmProof | None = None, **changes) -> Contribution:
    """A contribution whose signed losses are the tiny proof's public outputs (unless changed)."""
    proof = proof or tiny.proof
    (before, after), (s_before, s_after) = tiny.proof.instances, tiny.output_scales
    fields = dict(run_id=RUN, round=round_, global_hash=GLOBAL, update_hash="0x" + "22" * 32,
                  proof_hash=proof.proof_hash, data_commitment="0x" + "44" * 32, loss_before=before / 2**s_before,
                  loss_after=after / 2**s_after)
    return Contribution(**{**fields, **changes})  # fmt: skip


def address(key: str) -> str:
    return Account.from_key(key).address


def record(registry: Registry, round_: int, key: str):
    """`key`'s record of round `round_` as the chain emitted it (claim and rewardOf take the record)."""
    return registry.get_record(RUN, round_, address(key))


def paid_wei(receipt) -> int:
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


# ---------------------------------------------------------------------------------------------- stake
def test_stake_to_join_and_unstake_waits_out_the_delay(chain, keys, tiny, verifier):
    agg = deploy(chain, keys, tiny, verifier)
    key = keys["spare"][0]
    node = agg.with_sender(key)
    assert not agg.is_approved(address(key))
    node.stake(ETH // 2)
    assert not agg.is_approved(address(key))  # below the minimum stake
    node.stake(ETH // 2)
    assert agg.is_approved(address(key)) and agg.stake_of(address(key)).amount == ETH

    owner = agg.with_sender(keys["owner"])
    owner.set_params(approval_required=True)  # a permissioned federation: staking is not enough
    assert not agg.is_approved(address(key))
    owner.approve_node(address(key))
    assert agg.is_approved(address(key))

    node.request_unstake()
    info = agg.stake_of(address(key))
    assert info.exiting and info.unlock_at == agg.rounds_opened() + 2 and not agg.is_approved(address(key))
    expect_revert("UnstakeLocked", node.withdraw_stake)  # cannot flee a pending slash
    open_round(agg)
    expect_revert("UnstakeLocked", node.withdraw_stake)
    open_round(agg)
    before = agg.w3.eth.get_balance(address(key))
    receipt = node.withdraw_stake()
    assert agg.w3.eth.get_balance(address(key)) == before + ETH - paid_wei(receipt)
    assert agg.stake_of(address(key)).amount == 0
    expect_revert("NotExiting", node.withdraw_stake)  # paid once


def test_non_owner_stake_parameter_change_reverts(registry, keys):
    params = registry.params()
    assert (params.min_stake, params.emission_per_round, params.unstake_delay) == (ETH, EMISSION, 2)
    for who in (registry, registry.with_sender(keys["nodes"][0])):  # the aggregator, a node
        expect_revert("OwnableUnauthorizedAccount", lambda who=who: who.set_params(min_stake=0))
    raw = registry.contract.functions.setParams((0, 0, 10_001, 0, 0, False))  # basis points above 100 %
    with pytest.raises(ContractCustomError) as caught:
        raw.call({"from": address(keys["owner"])})
    assert caught.value.data == "0x" + function_signature_to_4byte_selector("InvalidParams()").hex()
    assert registry.params() == params


# ---------------------------------------------------------------------------------------------- rewards
@pytest.fixture(scope="module")
def rewarded_round(registry, keys, tiny):
    """One round: three SELECTED with weights (their shares of the round's average) 0.3, 0.1, 0.2, and a SELECTED
    free-rider with weight 0 (its score, 0.5, is what the aggregator measured: it is not what pays)."""
    round_ = open_round(registry)
    scores = [0.3, 0.1, 0.2, 0.0]
    for key, score in zip(keys["nodes"], scores, strict=True):
        c = contribution(tiny, round_, update_hash="0x" + address(key)[2:].lower() + "00" * 12,
                         proof_hash="0x" + address(key)[2:].lower() + "11" * 12)  # not proven here: its own hash
        registry.record_contribution(c, sign(key, c, registry.chain_id, registry.address), Status.SELECTED,
                                     score=0.5, weight=score)  # fmt: skip
    return round_, dict(zip(keys["nodes"], scores, strict=True))


def test_rewards_sum_to_the_emission_by_weight(registry, rewarded_round):
    round_, scores = rewarded_round
    first = next(iter(scores))
    # totals are final only at close
    expect_revert("RoundNotClosed", lambda: registry.claim(address(first), [record(registry, round_, first)]))
    registry.close_round(RUN, round_, "0x" + "99" * 32)
    info = registry.round_info(RUN, round_)
    assert info.emission == EMISSION and info.weight_total == pytest.approx(0.6)

    earned = {key: registry.reward_of(record(registry, round_, key)) for key in scores}
    for key, score in scores.items():
        assert earned[key] == EMISSION * round(score * 1e9) // round(0.6 * 1e9)
    free_rider = next(k for k, s in scores.items() if s == 0)
    assert earned[free_rider] == 0  # no weight in the average, nothing earned, whatever its score
    assert EMISSION - len(scores) < sum(earned.values()) <= EMISSION  # floor division leaves < 1 unit each

    for key in scores:
        if earned[key]:
            registry.claim(address(key))  # anyone may claim for a node; the tokens go to the node
    paid = {key: registry.reward_balance(address(key)) for key in scores}
    assert paid == earned and registry.token().functions.totalSupply().call() == sum(earned.values())
    expect_revert("NoReward", lambda: registry.claim(address(free_rider), [record(registry, round_, free_rider)]))


def test_reward_claim_twice_pays_once(registry, rewarded_round):
    round_, scores = rewarded_round
    key = next(iter(scores))
    if registry.round_info(RUN, round_).state != "closed":
        registry.close_round(RUN, round_, "0x" + "99" * 32)
    if registry.reward_of(record(registry, round_, key)):
        registry.claim(address(key), [record(registry, round_, key)])
    balance = registry.reward_balance(address(key))
    assert balance > 0 and registry.reward_of(record(registry, round_, key)) == 0
    assert registry.pending_rewards(address(key)) == (0, [])
    expect_revert("AlreadyClaimed", lambda: registry.claim(address(key), [record(registry, round_, key)]))
    assert registry.reward_balance(address(key)) == balance


def test_only_the_registry_mints_reward_tokens(registry, keys):
    token = registry.token()
    assert token.functions.minter().call() == registry.address
    with pytest.raises(ContractCustomError) as caught:
        token.functions.mint(address(keys["stranger"]), 1).call({"from": address(keys["owner"])})
    assert caught.value.data.startswith("0x" + function_signature_to_4byte_selector("NotMinter(address)").hex())


# ---------------------------------------------------------------------------------------------- slash
def forged(tiny) -> EvmProof:
    flipped = bytearray(tiny.proof.proof)
    flipped[200] ^= 1
    return EvmProof(bytes(flipped), tiny.proof.instances)


def test_honest_proof_is_not_slashable(registry, keys, tiny):
    key = keys["nodes"][0]
    round_ = open_round(registry)
    c = contribution(tiny, round_)
    signature = sign(key, c, registry.chain_id, registry.address)
    slasher = registry.with_sender(keys["stranger"])
    stake = registry.stake_of(address(key)).amount
    expect_revert("ProofValid", lambda: slasher.slash_bad_proof(c, signature, tiny.proof))
    # Starving the verifier of gas (it fails like a bad proof) must not slash an honest node either.
    call = registry.contract.functions.slashBadProof(c.to_message(), signature, tiny.proof.proof)
    out_of_gas = "0x" + function_signature_to_4byte_selector("VerifierOutOfGas()").hex()
    for gas in (250_000, 400_000, 550_000):
        with pytest.raises(ContractCustomError) as caught:
            call.call({"from": slasher.sender.address, "gas": gas})
        assert caught.value.data == out_of_gas, gas
    for gas in (700_000, 1_000_000):  # out of gas in the registry itself, or enough to show the proof holds
        with pytest.raises((ContractCustomError, ContractLogicError, Web3RPCError)):
            call.call({"from": slasher.sender.address, "gas": gas})
    assert registry.stake_of(address(key)).amount == stake and not registry.is_slashed(c, address(key))


def test_forged_proof_is_slashed_once(registry, keys, tiny):
    key = keys["nodes"][1]
    node = address(key)
    round_ = open_round(registry)
    bad = forged(tiny)
    c = contribution(tiny, round_, proof=bad)
    signature = sign(key, c, registry.chain_id, registry.address)
    slasher = registry.with_sender(keys["stranger"])
    stake, burned = registry.stake_of(node).amount, registry.total_burned()
    balance = registry.w3.eth.get_balance(slasher.sender.address)

    receipt = slasher.slash_bad_proof(c, signature, bad)
    amount = stake // 2
    assert registry.stake_of(node).amount == stake - amount and registry.is_slashed(c, node)
    assert registry.w3.eth.get_balance(slasher.sender.address) == balance + amount // 2 - paid_wei(receipt)
    assert registry.total_burned() == burned + amount - amount // 2
    event = registry.events("Slashed")[-1]["args"]
    assert (event["node"], event["by"], event["runId"], event["round"], event["amount"]) == (
        node, slasher.sender.address, RUN, round_, amount)  # fmt: skip
    expect_revert("AlreadySlashed", lambda: slasher.slash_bad_proof(c, signature, bad))
    assert registry.stake_of(node).amount == stake - amount


def test_slash_of_a_valid_proof_of_other_losses(registry, keys, tiny):
    """The proof verifies, but not for the losses the node signed: slashable, and the round's reward is lost."""
    key = keys["nodes"][2]
    round_ = open_round(registry)
    c = contribution(tiny, round_, loss_before=999.0, loss_after=0.0)
    signature = sign(key, c, registry.chain_id, registry.address)
    registry.record_contribution(c, signature, Status.SELECTED, Reason.NONE, score=0.5)  # recorded without a proof
    stake = registry.stake_of(address(key)).amount
    registry.with_sender(keys["stranger"]).slash_bad_proof(c, signature, tiny.proof)
    assert registry.stake_of(address(key)).amount == stake - stake // 2
    registry.close_round(RUN, round_, "0x" + "99" * 32)
    assert registry.reward_of(record(registry, round_, key)) == 0  # forfeited
    expect_revert("AlreadyClaimed", lambda: registry.claim(address(key), [record(registry, round_, key)]))


def test_slash_replay_across_registries_fails(chain, registry, keys, tiny, verifier):
    """Evidence signed for one registry is not evidence on another (EIP-712 domain: chain id + contract)."""
    other = deploy(chain, keys, tiny, verifier)
    key = keys["nodes"][3]
    other.with_sender(key).stake(ETH)
    round_ = open_round(registry)
    other.open_round(RUN, round_, GLOBAL, TINY)
    bad = forged(tiny)
    c = contribution(tiny, round_, proof=bad)
    signature = sign(key, c, registry.chain_id, registry.address)  # signed for `registry`
    slasher = other.with_sender(keys["stranger"])
    err = expect_revert("NotAParticipant", lambda: slasher.slash_bad_proof(c, signature, bad))
    assert address(key) not in str(err)  # another address is recovered in the other domain
    assert other.stake_of(address(key)).amount == ETH
    on_another_chain = sign(key, c, 1, registry.address)
    expect_revert("NotAParticipant", lambda: registry.with_sender(keys["stranger"]).slash_bad_proof(
        c, on_another_chain, bad))  # fmt: skip
    assert Web3.to_checksum_address(registry.address) != other.address


def test_sybil_forgers_signing_one_bad_contribution_are_each_slashed(registry, keys, tiny):
    """N9 (issue 30): ``slashed`` was keyed by the contribution's digest alone, so a second wallet signing the same
    bad contribution could not be slashed (AlreadySlashed, stake untouched). It is keyed per signer now."""
    round_ = open_round(registry)
    bad = forged(tiny)
    c = contribution(tiny, round_, proof=bad, update_hash="0x" + "5b" * 32)
    slasher = registry.with_sender(keys["stranger"])
    for key in (keys["nodes"][0], keys["nodes"][2]):
        stake = registry.stake_of(address(key)).amount
        slasher.slash_bad_proof(c, sign(key, c, registry.chain_id, registry.address), bad)
        assert registry.stake_of(address(key)).amount == stake - stake // 2 and registry.is_slashed(c, address(key))
    expect_revert("AlreadySlashed", lambda: slasher.slash_bad_proof(
        c, sign(keys["nodes"][0], c, registry.chain_id, registry.address), bad))


def test_a_round_judges_by_the_min_stake_it_opened_with(chain, keys, tiny, verifier):
    """N13 (issue 30): the owner raising minStake mid-round made an honest SELECTED reply of that round
    unrecordable (SignerNotApproved). A round keeps the minStake it opened with; the new one applies from the next
    round opened."""
    registry = deploy(chain, keys, tiny, verifier)
    key = keys["spare"][0]
    registry.with_sender(key).stake(ETH)
    first = open_round(registry)
    registry.with_sender(keys["owner"]).set_params(min_stake=2 * ETH)
    assert registry.round_info(RUN, first).min_stake == ETH and not registry.is_approved(address(key))
    c = contribution(tiny, first, update_hash="0x" + "6d" * 32)
    registry.record_contribution(c, sign(key, c, registry.chain_id, registry.address), Status.SELECTED,
                                 score=0.2, weight=1.0)
    second = open_round(registry)
    later = contribution(tiny, second, update_hash="0x" + "6e" * 32)
    expect_revert("SignerNotApproved", lambda: registry.record_contribution(
        later, sign(key, later, registry.chain_id, registry.address), Status.SELECTED, score=0.2, weight=1.0))
