"""Incentives on a real anvil with real EZKL proofs: stake to join, rewards by positive score, trustless slashing
of a signed bad proof (issue 12). `pytest -k "stake or reward or slash"` selects them."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from contracts import ChainError, Contribution, EvmProof, Reason, Registry, Status, circuit_id_of, connect
from contracts import sign_contribution as sign
from contracts.testing import advance_time

pytestmark = pytest.mark.integration

GLOBAL = "0x" + "11" * 32
RUN = "0x" + "a1" * 32
TINY = ""  # the tiny circuit's id on the registry (derived from its key): set by the first deploy()
ETH = 10**18
HOUR = 3_600
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
    """A permissionless registry (1 ETH to join, an hour's unstake delay) that verifies the tiny circuit; seen from
    the aggregator. Its parameters are set at once (nothing staked, no round yet); later changes wait a day."""
    global TINY
    owner = Registry.deploy(connect(chain.rpc_url), keys["owner"], Account.from_key(keys["aggregator"]).address)
    owner.set_params(min_stake=ETH, emission_per_round=EMISSION, slash_bps=5_000, bounty_bps=5_000,
                     unstake_delay=HOUR, approval_required=False)  # fmt: skip
    assert owner.params().unstake_delay == HOUR  # in force now: nobody is bound by the old rules yet
    TINY, _ = owner.register_circuit(verifier.address, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
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
                  loss_after=after / 2**s_after, circuit_key=TINY)
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
    assert agg.is_approved(address(key))  # a day's notice first: a change binds nobody at once
    advance_time(agg.w3, agg.params_delay())
    assert not agg.is_approved(address(key))
    owner.approve_node(address(key))
    assert agg.is_approved(address(key))

    node.request_unstake()
    info = agg.stake_of(address(key))
    assert info.exiting and info.unlock_at == info.exit_at + HOUR and not agg.is_approved(address(key))
    expect_revert("UnstakeLocked", node.withdraw_stake)  # cannot flee a pending slash
    open_round(agg)  # rounds opened no longer count (N6: a run's rounds could be opened at will)
    expect_revert("UnstakeLocked", node.withdraw_stake)
    advance_time(agg.w3, HOUR)
    before = agg.w3.eth.get_balance(address(key))
    receipt = node.withdraw_stake()
    assert agg.w3.eth.get_balance(address(key)) == before + ETH - paid_wei(receipt)
    assert agg.stake_of(address(key)).amount == 0
    expect_revert("NotExiting", node.withdraw_stake)  # paid once


def test_non_owner_stake_parameter_change_reverts(registry, keys):
    params = registry.params()
    assert (params.min_stake, params.emission_per_round, params.unstake_delay) == (ETH, EMISSION, HOUR)
    for who in (registry, registry.with_sender(keys["nodes"][0])):  # the aggregator, a node
        expect_revert("OwnableUnauthorizedAccount", lambda who=who: who.set_params(min_stake=0))
    # N5: the owner's powers are capped: at most half a stake slashed, half of that as bounty, 30 days' lock
    for over_cap in ((0, 0, 10_001, 0, 0, False), (0, 0, 5_001, 0, 0, False), (0, 0, 0, 5_001, 0, False),
                     (0, 0, 0, 0, 30 * 86_400 + 1, False)):
        raw = registry.contract.functions.setParams(over_cap)
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
    salt = slasher.commit_slash(c)
    call = registry.contract.functions.slashBadProof(c.to_message(), signature, tiny.proof.proof, salt)
    out_of_gas = "0x" + function_signature_to_4byte_selector("VerifierOutOfGas()").hex()
    for gas in (250_000, 400_000, 550_000):
        with pytest.raises(ContractCustomError) as caught:
            call.call({"from": slasher.sender.address, "gas": gas}, block_identifier="pending")
        assert caught.value.data == out_of_gas, gas
    for gas in (700_000, 1_000_000):  # out of gas in the registry itself, or enough to show the proof holds
        with pytest.raises((ContractCustomError, ContractLogicError, Web3RPCError)):
            call.call({"from": slasher.sender.address, "gas": gas}, block_identifier="pending")
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
    commit = registry.w3.eth.get_transaction_receipt(registry.events("SlashCommitted")[-1]["tx_hash"])
    amount = stake // 2
    assert registry.stake_of(node).amount == stake - amount and registry.is_slashed(c, node)
    assert registry.w3.eth.get_balance(slasher.sender.address) == (balance + amount // 2 - paid_wei(receipt)
                                                                   - paid_wei(commit))
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
    c = contribution(tiny, first, update_hash="0x" + "6d" * 32)
    registry.record_contribution(c, sign(key, c, registry.chain_id, registry.address), Status.SELECTED,
                                 score=0.2, weight=1.0)
    assert registry.is_approved(address(key))  # the change waits out the registry's delay
    advance_time(registry.w3, registry.params_delay())
    assert not registry.is_approved(address(key)) and registry.round_info(RUN, first).min_stake == ETH
    second = open_round(registry)
    later = contribution(tiny, second, update_hash="0x" + "6e" * 32)
    expect_revert("SignerNotApproved", lambda: registry.record_contribution(
        later, sign(key, later, registry.chain_id, registry.address), Status.SELECTED, score=0.2, weight=1.0))


# ------------------------------------------------------------------------------------ bounded powers (issue 30)
@pytest.fixture(scope="module")
def other_key(tmp_path_factory):
    """Another circuit's verifying key (the tiny statement at another scale)."""
    from contracts.testing import make_tiny_circuit

    return make_tiny_circuit(tmp_path_factory.mktemp("other-key"), scale=7)


def test_an_honest_proof_is_judged_by_the_circuit_its_node_signed(chain, keys, tiny, verifier, other_key):
    """N2: the signed contribution named no circuit and the aggregator chose the round's, so a round opened with
    circuit B judged an honest circuit-A proof as bad (stake 1 -> 0.5 ETH). N5: the owner could register an id with
    a wrong key. A circuit's id is derived from its key now, nodes sign it, and slashing judges by it."""
    registry = deploy(chain, keys, tiny, verifier)
    codehash = Web3.keccak(registry.w3.eth.get_code(verifier.address))
    assert TINY == circuit_id_of(codehash, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
    assert TINY == registry.circuit_id_of(codehash, tiny.vka, len(tiny.proof.proof), tiny.output_scales)
    # anyone may register a key; it lands under its own id, never under one a node signed for another key
    other, _ = registry.with_sender(keys["stranger"]).register_circuit(
        verifier.address, other_key.vka, len(other_key.proof.proof), other_key.output_scales)
    assert other != TINY and registry.circuit(TINY).vka_digest == "0x" + Web3.keccak(b"".join(tiny.vka)).hex()
    expect_revert("CircuitAlreadyRegistered", lambda: registry.with_sender(keys["owner"]).register_circuit(
        verifier.address, tiny.vka, len(tiny.proof.proof), tiny.output_scales))
    key = keys["spare"][1]
    registry.with_sender(key).stake(ETH)
    round_ = next(_rounds)
    registry.open_round(RUN, round_, GLOBAL, other)  # the aggregator opens the round with circuit B
    honest = contribution(tiny, round_)  # the node proved and signed for A
    signature = sign(key, honest, registry.chain_id, registry.address)
    expect_revert("CircuitMismatch", lambda: registry.record_contribution(honest, signature, Status.SELECTED,
                                                                          proof=tiny.proof))
    expect_revert("ProofValid", lambda: registry.with_sender(keys["stranger"]).slash_bad_proof(
        honest, signature, tiny.proof))
    unknown = contribution(tiny, round_, proof=forged(tiny), circuit_key="0x" + "ab" * 32)  # nobody registered it
    expect_revert("CircuitNotRegistered", lambda: registry.with_sender(keys["stranger"]).slash_bad_proof(
        unknown, sign(key, unknown, registry.chain_id, registry.address), forged(tiny)))
    assert registry.stake_of(address(key)).amount == ETH


def test_parameter_changes_wait_out_the_delay_and_a_round_keeps_what_it_opened_with(chain, keys, tiny, verifier):
    """N5: the owner's changes applied at once. Now they apply paramsDelay later, and a round opened before keeps
    its emission and min stake."""
    registry = deploy(chain, keys, tiny, verifier)
    registry.with_sender(keys["spare"][2]).stake(ETH)
    owner = registry.with_sender(keys["owner"])
    owner.set_params(emission_per_round=1, min_stake=3 * ETH)
    pending, effective_at = registry.pending_params()
    assert pending.emission_per_round == 1 and effective_at > 0 and registry.params_delay() == 86_400
    before = open_round(registry)
    assert registry.params().emission_per_round == EMISSION and registry.round_info(RUN, before).emission == EMISSION
    advance_time(registry.w3, registry.params_delay())
    assert registry.pending_params() == (None, 0) and registry.params().min_stake == 3 * ETH
    assert registry.round_info(RUN, before).emission == EMISSION  # fixed when it opened
    after = open_round(registry)
    assert (registry.round_info(RUN, after).emission, registry.round_info(RUN, after).min_stake) == (1, 3 * ETH)


def test_a_forger_cannot_leave_before_its_last_record_can_be_slashed(chain, keys, tiny, verifier):
    """N6: the unstake delay counted rounds opened in any run, so a forger withdrew before its slash landed. The
    delay is time now, counted from the later of the exit request and the wallet's last record; a round opened
    before the request still records the wallet (and pushes its unlock)."""
    registry = deploy(chain, keys, tiny, verifier)
    key = keys["spare"][0]
    forger = registry.with_sender(key)
    forger.stake(ETH)
    round_ = open_round(registry)
    bad = forged(tiny)
    c = contribution(tiny, round_, proof=bad, update_hash="0x" + "7a" * 32)
    forger.request_unstake()  # leaves before its reply is recorded
    for _ in range(3):
        open_round(registry)  # rounds opened at will do not shorten anything
    advance_time(registry.w3, HOUR // 2)
    registry.record_contribution(c, sign(key, c, registry.chain_id, registry.address), Status.REJECTED,
                                 Reason.BAD_PROOF)  # the round opened before the request: still recorded
    info = registry.stake_of(address(key))
    assert info.last_record_at > info.exit_at and info.unlock_at == info.last_record_at + HOUR
    advance_time(registry.w3, HOUR // 2 + 60)  # an hour after the request, half an hour after the record
    expect_revert("UnstakeLocked", forger.withdraw_stake)
    registry.with_sender(keys["stranger"]).slash_bad_proof(c, sign(key, c, registry.chain_id, registry.address), bad)
    advance_time(registry.w3, HOUR)
    forger.withdraw_stake()
    assert registry.events("StakeWithdrawn")[-1]["args"]["amount"] == ETH // 2  # the slash landed first


def test_a_copier_of_the_slash_evidence_gets_no_bounty(registry, keys, tiny):
    """N8: the evidence sat in the mempool and a copier with a higher tip took the bounty. The bounty goes only to
    whoever committed to the evidence in an earlier block."""
    key = keys["nodes"][3]
    round_ = open_round(registry)
    bad = forged(tiny)
    c = contribution(tiny, round_, proof=bad, update_hash="0x" + "8c" * 32)
    signature = sign(key, c, registry.chain_id, registry.address)
    slasher, copier = registry.with_sender(keys["stranger"]), registry.with_sender(keys["spare"][2])
    salt = slasher.commit_slash(c)
    evidence = (c.to_message(), signature, bad.proof, salt)  # what the slasher's transaction shows
    expect_revert("NoSlashCommitment", lambda: copier._transact("slashBadProof", *evidence))
    copier_salt = copier.commit_slash(c)  # a commitment of its own is only good from the next block on
    assert copier_salt != salt
    receipt = registry.with_sender(keys["stranger"])._transact("slashBadProof", *evidence)
    assert registry.events("Slashed")[-1]["args"]["by"] == slasher.sender.address and receipt["status"] == 1
    expect_revert("AlreadySlashed", lambda: copier._transact("slashBadProof", c.to_message(), signature, bad.proof,
                                                             copier_salt))


def test_a_round_keeps_whether_it_required_approval(chain, keys, tiny, verifier):
    """N13's rule for the approval rule itself: a federation turning permissioned while a round is open does not
    make that round's honest replies of staked, unapproved wallets unrecordable; it applies from the next round."""
    registry = deploy(chain, keys, tiny, verifier)  # permissionless: stake alone admits
    key = keys["spare"][1]
    registry.with_sender(key).stake(ETH)
    first = open_round(registry)
    registry.with_sender(keys["owner"]).set_params(approval_required=True)
    advance_time(registry.w3, registry.params_delay())
    assert not registry.round_info(RUN, first).approval_required and not registry.is_approved(address(key))
    c = contribution(tiny, first, update_hash="0x" + "9a" * 32)
    registry.record_contribution(c, sign(key, c, registry.chain_id, registry.address), Status.SELECTED,
                                 score=0.2, weight=1.0)
    second = open_round(registry)
    assert registry.round_info(RUN, second).approval_required
    later = contribution(tiny, second, update_hash="0x" + "9b" * 32)
    expect_revert("SignerNotApproved", lambda: registry.record_contribution(
        later, sign(key, later, registry.chain_id, registry.address), Status.SELECTED, score=0.2, weight=1.0))
