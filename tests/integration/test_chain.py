"""The ContributionRegistry on a real anvil: the round life cycle, every revert the aggregator can meet,
and on-chain verification of a real EZKL proof."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account
from web3 import Web3

from contracts import (
    ChainError,
    Contribution,
    Entry,
    EvmProof,
    Reason,
    Registry,
    Status,
    connect,
    sign_contribution,
)
from contracts.registry import Record
from contracts.testing import deploy_contract, make_tiny_circuit
from contracts.typed_data import signable

pytestmark = pytest.mark.integration

GLOBAL = "0x" + "11" * 32
RUN = "0x" + "a1" * 32  # the run these tests record in
CIRCUIT = "0x" + "cc" * 32
_rounds = itertools.count(100)
_work = itertools.count(1)


# chain (one anvil), keys (owner, aggregator, three nodes, one stranger) and verifier (the tiny circuit's, deployed
# once): tests/integration/conftest.py


@pytest.fixture(scope="module")
def registry(chain, keys):
    """A registry with three approved nodes, seen from the aggregator's side."""
    w3 = connect(chain.rpc_url)
    owner = Registry.deploy(w3, keys["owner"], Account.from_key(keys["aggregator"]).address)
    for key in keys["nodes"]:
        owner.approve_node(Account.from_key(key).address)
    return owner.with_sender(keys["aggregator"])


@pytest.fixture()
def open_round(registry):
    """A fresh open round number (each test gets its own, so records never collide)."""
    number = next(_rounds)
    registry.open_round(RUN, number, GLOBAL, CIRCUIT)
    return number


def make_contribution(round_: int, **changes) -> Contribution:
    """A contribution with an update and proof hash of its own (the registry records one piece of work once)."""
    work = next(_work)
    fields = dict(
        run_id=RUN, round=round_, global_hash=GLOBAL, update_hash=f"0x{work:064x}", proof_hash=f"0x{work << 128:064x}",
        data_commitment="0x" + "44" * 32, loss_before=0.5, loss_after=0.25, circuit_key=CIRCUIT,
    )  # fmt: skip
    return Contribution(**{**fields, **changes})


def signed(registry: Registry, key: str, contribution: Contribution, chain_id=None, address=None) -> bytes:
    """`key`'s signature of `contribution` for `registry` (or for another chain id / contract address)."""
    return sign_contribution(key, contribution, chain_id or registry.chain_id, address or registry.address)


def test_round_life_cycle_end_to_end(chain, keys):
    w3 = connect(chain.rpc_url)
    aggregator = Account.from_key(keys["aggregator"]).address
    nodes = [Account.from_key(k) for k in keys["nodes"][:2]]
    stranger = Account.from_key(keys["stranger"]).address

    owner = Registry.deploy(w3, keys["owner"], aggregator)
    assert (owner.owner(), owner.aggregator()) == (Account.from_key(keys["owner"]).address, aggregator)
    for node in nodes:
        owner.approve_node(node.address)
    agg = Registry.at(w3, owner.address, keys["aggregator"])
    agg.open_round(RUN, 1, GLOBAL, CIRCUIT)
    assert agg.round_info(RUN, 1).state == "open"

    c0 = make_contribution(1, loss_after=0.125)
    c1 = make_contribution(1, update_hash="0x" + "55" * 32, loss_before=0.5, loss_after=0.75)
    sig0, sig1 = signed(agg, nodes[0].key, c0), signed(agg, nodes[1].key, c1)
    message = signable(c0, chain.chain_id, agg.address)  # the contract and eth-account hash the same typed data
    digest = Web3.keccak(b"\x19" + message.version + message.header + message.body)
    assert agg.contract.functions.contributionDigest(c0.to_message()).call() == digest
    agg.record_contribution(c0, sig0, Status.SELECTED)
    agg.record_contribution(c1, sig1, Status.REJECTED, Reason.NO_IMPROVEMENT)
    agg.record_rejection(RUN, 1, 42, Reason.UNKNOWN_NODE, "0x" + "ee" * 32)
    rejected = agg.rejection_key(42)
    agg.close_round(RUN, 1, "0x" + "99" * 32)

    record = agg.get_record(RUN, 1, nodes[0].address)
    assert (record.status, record.reason, record.signed, record.proof_verified) == (
        Status.SELECTED, Reason.NONE, True, False
    )  # fmt: skip
    assert (record.update_hash, record.loss_before, record.loss_after) == (c0.update_hash, 0.5, 0.125)
    rejection = agg.get_record(RUN, 1, rejected)
    assert (rejection.status, rejection.reason, rejection.signed) == (Status.REJECTED, Reason.UNKNOWN_NODE, False)
    assert rejection.data_commitment == "0x" + "ee" * 32
    assert [r.node for r in agg.round_records(RUN, 1)] == [nodes[0].address, nodes[1].address, rejected]
    assert agg.get_record(RUN, 1, stranger) is None
    assert [(r.run_id, r.round) for r in agg.node_history(nodes[1].address)] == [(RUN, 1)]
    assert agg.get_record(RUN, 2, nodes[0].address) is None and not agg.has_record(RUN, 2, nodes[0].address)
    assert agg.has_record(RUN, 1, nodes[0].address)
    info = agg.round_info(RUN, 1)
    assert (info.state, info.global_hash, info.circuit_id, info.new_global_hash) == (
        "closed", GLOBAL, CIRCUIT, "0x" + "99" * 32
    )  # fmt: skip

    events = agg.events()
    skipped = ("OwnershipTransferred", "AggregatorChanged", "ParamsChanged")  # the deployment's
    assert [e["event"] for e in events if e["event"] not in skipped] == [
        "NodeApproved", "NodeApproved", "RunOpened", "RoundOpened",
        "ContributionRecorded", "ContributionRecorded", "ContributionRecorded", "RoundClosed",
    ]  # fmt: skip
    recorded = agg.events("ContributionRecorded")[0]["args"]
    assert (recorded["node"], recorded["status"], recorded["lossAfter"]) == (nodes[0].address, 1, 125_000_000)
    owner.revoke_node(nodes[1].address)
    assert not agg.is_approved(nodes[1].address) and agg.events("NodeRevoked")[0]["args"]["node"] == nodes[1].address


def test_score_round_trips_through_record_and_event(registry, keys, open_round):
    """The aggregator's validation score (negative included) is stored and emitted in fixed point."""
    scores = {keys["nodes"][0]: 0.0123456789, keys["nodes"][1]: -0.5, keys["nodes"][2]: -3e-9}
    statuses = {keys["nodes"][0]: (Status.SELECTED, Reason.NONE), keys["nodes"][1]: (Status.REJECTED, Reason.HARMFUL),
                keys["nodes"][2]: (Status.NOT_SELECTED, Reason.NONE)}  # fmt: skip
    for key, score in scores.items():
        c = make_contribution(open_round, update_hash="0x" + Account.from_key(key).address[2:].lower() + "00" * 12)
        registry.record_contribution(c, signed(registry, key, c), *statuses[key], score=score)
    registry.record_rejection(RUN, open_round, 5, Reason.BAD_SIGNATURE, "0x" + "ee" * 32)
    stranger = registry.rejection_key(5)
    for key, score in scores.items():
        record = registry.get_record(RUN, open_round, Account.from_key(key).address)
        assert record.score == pytest.approx(score, abs=5e-10) and (record.status, record.reason) == statuses[key]
    assert registry.get_record(RUN, open_round, stranger).score == 0.0
    emitted = {e["args"]["node"]: e["args"]["score"] for e in registry.events("ContributionRecorded")
               if e["args"]["round"] == open_round}  # fmt: skip
    assert emitted == {Account.from_key(keys["nodes"][0]).address: 12_345_679,
                       Account.from_key(keys["nodes"][1]).address: -500_000_000,
                       Account.from_key(keys["nodes"][2]).address: -3, stranger: 0}  # fmt: skip


def test_contract_and_python_recover_the_same_signer(registry, keys):
    c = make_contribution(7)
    signature = signed(registry, keys["nodes"][0], c)
    on_chain = registry.contract.functions.recoverSigner(c.to_message(), signature).call()
    assert on_chain == Account.from_key(keys["nodes"][0]).address


# ---------------------------------------------------------------------------------------------- reverts
def expect_revert(error: str, action) -> ChainError:
    with pytest.raises(ChainError) as caught:
        action()
    assert caught.value.error_name == error, str(caught.value)
    assert "\n" not in str(caught.value)
    return caught.value


def test_unapproved_node_is_refused(registry, keys, open_round):
    c = make_contribution(open_round)
    err = expect_revert(
        "SignerNotApproved", lambda: registry.record_contribution(c, signed(registry, keys["stranger"], c), 1)
    )
    assert Account.from_key(keys["stranger"]).address in str(err) and "not an approved node" in str(err)


def test_revoked_node_is_refused(chain, registry, keys, open_round):
    node = Account.from_key(chain.private_keys[6])
    owner = registry.with_sender(keys["owner"])
    owner.approve_node(node.address)
    owner.revoke_node(node.address)
    c = make_contribution(open_round)
    expect_revert("SignerNotApproved", lambda: registry.record_contribution(c, signed(registry, node.key, c), 1))


@pytest.mark.parametrize(
    "forgery",
    ["another key", "another round", "another chain id", "another contract", "another loss"],
)
def test_signatures_that_do_not_match_the_record_are_refused(registry, keys, open_round, forgery):
    c = make_contribution(open_round)
    node_key = keys["nodes"][0]
    signature = {
        "another key": lambda: signed(registry, keys["stranger"], c),
        "another round": lambda: signed(registry, node_key, make_contribution(open_round + 10_000)),
        "another chain id": lambda: signed(registry, node_key, c, chain_id=1),
        "another contract": lambda: signed(registry, node_key, c, address="0x" + "ab" * 20),
        "another loss": lambda: signed(registry, node_key, make_contribution(open_round, loss_after=0.2)),
    }[forgery]()
    err = expect_revert("SignerNotApproved", lambda: registry.record_contribution(c, signature, Status.SELECTED))
    assert Account.from_key(node_key).address not in str(err)


def test_malleable_signature_is_refused(registry, keys, open_round):
    c = make_contribution(open_round)
    signature = signed(registry, keys["nodes"][0], c)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (n - int.from_bytes(signature[32:64], "big")).to_bytes(32, "big")
    twin = signature[:32] + high_s + bytes([55 - signature[64]])  # the same signature, malleated (EIP-2)
    expect_revert("MalformedSignature", lambda: registry.record_contribution(c, twin, Status.SELECTED))
    expect_revert("MalformedSignature", lambda: registry.record_contribution(c, signature[:64], Status.SELECTED))


def test_second_record_for_the_same_round_and_node_is_refused(registry, keys, open_round):
    key = keys["nodes"][0]
    c = make_contribution(open_round)
    registry.record_contribution(c, signed(registry, key, c), Status.SELECTED)
    again = make_contribution(open_round, update_hash="0x" + "66" * 32)
    expect_revert("AlreadyRecorded", lambda: registry.record_contribution(again, signed(registry, key, again), 2))
    registry.record_rejection(RUN, open_round, 9, Reason.STALE)
    expect_revert("AlreadyRecorded", lambda: registry.record_rejection(RUN, open_round, 9, Reason.MALFORMED))


def test_only_the_aggregator_records(registry, keys, open_round):
    c = make_contribution(open_round)
    signature = signed(registry, keys["nodes"][0], c)
    owner = registry.with_sender(keys["owner"])
    expect_revert("NotAggregator", lambda: owner.record_contribution(c, signature, Status.SELECTED))
    expect_revert("NotAggregator", lambda: owner.record_rejection(RUN, open_round, 1, Reason.MALFORMED))
    expect_revert("NotAggregator", lambda: owner.open_round(RUN, next(_rounds), GLOBAL, CIRCUIT))
    expect_revert("OwnableUnauthorizedAccount", lambda: registry.approve_node(keys_address(keys)))


def keys_address(keys) -> str:
    return Account.from_key(keys["stranger"]).address


def test_rounds_that_are_not_open_are_refused(registry, keys):
    never_opened = next(_rounds)
    c = make_contribution(never_opened)
    key = keys["nodes"][0]
    expect_revert("RoundNotOpen", lambda: registry.record_contribution(c, signed(registry, key, c), 1))
    expect_revert("RoundNotOpen", lambda: registry.record_rejection(RUN, never_opened, 1, 1))
    closed = next(_rounds)
    registry.open_round(RUN, closed, GLOBAL, CIRCUIT)
    registry.close_round(RUN, closed, "0x" + "99" * 32)
    c = make_contribution(closed)
    err = expect_revert("RoundNotOpen", lambda: registry.record_contribution(c, signed(registry, key, c), 1))
    assert f"round {closed} of run {RUN} is not open" in str(err)
    expect_revert("RoundAlreadyOpened", lambda: registry.open_round(RUN, closed, GLOBAL, CIRCUIT))


def test_one_piece_of_work_is_recorded_once_and_only_selected_records_weigh(registry, keys, open_round):
    """A Sybil copy: the same update (or the same proof) signed by a second wallet was recorded VERIFIED twice and
    paid twice (b87194b). Now a second verified record of a round with that update or proof hash is refused
    (DuplicateWork) and the copy is recorded REJECTED, DUPLICATE, weightless; a weight on anything but a SELECTED
    record, or above the whole round, is refused."""
    first, copier, third = keys["nodes"]
    c = make_contribution(open_round, update_hash="0x" + "a1" * 32, proof_hash="0x" + "b1" * 32)
    registry.record_contribution(c, signed(registry, first, c), Status.SELECTED, score=0.3, weight=1.0)
    same_proof = make_contribution(open_round, update_hash="0x" + "a2" * 32, proof_hash="0x" + "b1" * 32)
    for copy in (c, same_proof):
        expect_revert("DuplicateWork", lambda copy=copy: registry.record_contribution(
            copy, signed(registry, copier, copy), Status.NOT_SELECTED))
    registry.record_contribution(c, signed(registry, copier, c), Status.REJECTED, Reason.DUPLICATE, score=0.3)
    assert registry.get_record(RUN, open_round, Account.from_key(copier).address).reason == Reason.DUPLICATE
    own = make_contribution(open_round, update_hash="0x" + "a3" * 32, proof_hash="0x" + "b3" * 32)
    sig = signed(registry, third, own)
    expect_revert("InvalidWeight", lambda: registry.record_contribution(own, sig, Status.NOT_SELECTED, weight=0.5))
    over = (own.to_message(), sig, int(Status.SELECTED), 0, 10**8, 15 * 10**8)  # weight 1.5 (Python refuses it)
    expect_revert("InvalidWeight", lambda: registry._transact("recordContributions", bytes.fromhex(RUN[2:]),
                                                              open_round, [over]))
    registry.record_contribution(own, sig, Status.NOT_SELECTED)
    assert registry.round_info(RUN, open_round).weight_total == pytest.approx(1.0)


def test_stale_global_hash_and_invalid_outcomes_are_refused(registry, keys, open_round):
    key = keys["nodes"][1]
    stale = make_contribution(open_round, global_hash="0x" + "77" * 32)
    stale_sig = signed(registry, key, stale)
    err = expect_revert("GlobalHashMismatch", lambda: registry.record_contribution(stale, stale_sig, 1))
    assert "stale" in str(err)
    c = make_contribution(open_round)
    sig = signed(registry, key, c)
    expect_revert("InvalidOutcome", lambda: registry.record_contribution(c, sig, Status.SELECTED, Reason.BAD_PROOF))
    expect_revert("InvalidOutcome", lambda: registry.record_rejection(RUN, open_round, 1, Reason.BAD_PROOF))
    registry.record_contribution(c, sig, Status.NOT_SELECTED, Reason.NO_QUORUM)


# ---------------------------------------------------------------------------------------------- invariants
def test_an_unsigned_rejection_never_takes_a_wallets_slot(registry, keys, open_round):
    """A BAD_SIGNATURE rejection (or any unsigned one) cannot block the genuine signed contribution: the
    aggregator names the rejected reply by its Flower node id and the contract derives the key from a hash."""
    from aggregator.protocol.verification import reply_address

    inputs = next(i for i in registry.contract.abi if i.get("name") == "recordRejection")["inputs"]
    assert "address" not in [i["type"] for i in inputs]  # the old contract took any address, an approved one too
    wallet = Account.from_key(keys["nodes"][0]).address
    for node_id in (0, 7, 2**64 - 1):
        assert registry.rejection_key(node_id) == reply_address(node_id) != wallet  # the aggregator's own key
    registry.record_rejection(RUN, open_round, 7, Reason.BAD_SIGNATURE, "0x" + "ee" * 32)
    c = make_contribution(open_round)
    registry.record_contribution(c, signed(registry, keys["nodes"][0], c), Status.SELECTED)
    assert registry.get_record(RUN, open_round, wallet).signed
    assert registry.get_record(RUN, open_round, reply_address(7)).reason == Reason.BAD_SIGNATURE


TINY = ""  # the tiny circuit's id on the registry (derived from its key): set by the circuits fixture
OTHER = ""  # a circuit with another verifying key


@pytest.fixture(scope="module")
def other_circuit(tmp_path_factory):
    return make_tiny_circuit(tmp_path_factory.mktemp("other-circuit"), scale=7)


@pytest.fixture(scope="module")
def circuits(registry, keys, tiny_circuit, other_circuit, verifier):
    """TINY registered with the tiny circuit's key, OTHER with another circuit's (same verifier contract)."""
    global TINY, OTHER
    owner = registry.with_sender(keys["owner"])
    TINY, OTHER = (owner.register_circuit(verifier.address, circuit.vka, len(circuit.proof.proof),
                                          circuit.output_scales)[0] for circuit in (tiny_circuit, other_circuit))
    return registry


def proof_round(registry, circuit_id: str) -> int:
    number = next(_rounds)
    registry.open_round(RUN, number, GLOBAL, circuit_id)
    return number


def proven(circuit, round_: int, proof=None, **changes) -> Contribution:
    """A contribution for the circuit's proof: its signed losses are the proof's outputs unless changed."""
    proof = proof or circuit.proof
    (before, after), (s_before, s_after) = proof.instances, circuit.output_scales
    fields = dict(proof_hash=proof.proof_hash, loss_before=before / 2**s_before, loss_after=after / 2**s_after,
                  circuit_key=TINY)  # the tiny circuit's key unless changed
    return make_contribution(round_, **{**fields, **changes})


def test_circuits_are_registered_once_under_the_id_of_their_key(circuits, keys, tiny_circuit, verifier):
    info = circuits.circuit(TINY)
    assert info.registered and info.verifier == verifier.address
    assert (info.proof_length, info.output_scales) == (len(tiny_circuit.proof.proof), tiny_circuit.output_scales)
    assert info.vka_digest == "0x" + Web3.keccak(b"".join(tiny_circuit.vka)).hex()
    assert circuits.vka(TINY) == tiny_circuit.vka and not circuits.circuit("0x" + "01" * 32).registered
    owner = circuits.with_sender(keys["owner"])
    args = (verifier.address, tiny_circuit.vka, len(tiny_circuit.proof.proof), tiny_circuit.output_scales)
    expect_revert("CircuitAlreadyRegistered", lambda: owner.register_circuit(*args))  # no key swap later
    # anyone may register, but only under the id its fields give: another proof length is another circuit
    longer, _ = circuits.register_circuit(*args[:2], args[2] + 32, args[3])
    assert longer not in (TINY, OTHER) and circuits.circuit(TINY).proof_length == len(tiny_circuit.proof.proof)
    expect_revert("InvalidCircuit", lambda: owner.register_circuit(*args[:3], (8, 30)))
    expect_revert("InvalidCircuit", lambda: owner.register_circuit(Account.from_key(keys["owner"]).address,
                                                                  *args[1:]))  # no verifier code there


def test_on_chain_proof_verification(circuits, keys, tiny_circuit):
    key = keys["nodes"][2]
    node = Account.from_key(key).address
    honest = tiny_circuit.proof
    round_ = proof_round(circuits, TINY)
    c = proven(tiny_circuit, round_)
    signature = signed(circuits, key, c)

    flipped = bytearray(honest.proof)
    flipped[200] ^= 1
    tampered = EvmProof(bytes(flipped), honest.instances)
    # a proof other than the one the node signed
    err = expect_revert("ProofHashMismatch", lambda: circuits.record_contribution(c, signature, 1, proof=tampered))
    assert tampered.proof_hash in str(err)
    # a node that signed a tampered proof: the verifier says no
    c_bad = proven(tiny_circuit, round_, proof=tampered)
    sig_bad = signed(circuits, key, c_bad)
    expect_revert("ProofRejected", lambda: circuits.record_contribution(c_bad, sig_bad, 1, proof=tampered))
    assert not circuits.has_record(RUN, round_, node)

    circuits.record_contribution(c, signature, Status.SELECTED, proof=honest, score=0.25)
    record = circuits.get_record(RUN, round_, node)
    assert record.proof_verified and record.signed and record.proof_hash == honest.proof_hash
    assert (record.loss_before, record.loss_after, record.score) == (c.loss_before, c.loss_after, 0.25)


def test_a_verified_proof_shows_the_signed_losses(circuits, keys, tiny_circuit):
    """Finding 18.4: a valid proof with other public outputs was recorded with the node's made-up losses."""
    key = keys["nodes"][0]
    round_ = proof_round(circuits, TINY)
    step = 1 / 2 ** tiny_circuit.output_scales[0]
    for lie in (dict(loss_before=999.0, loss_after=0.0), dict(loss_before=tiny_circuit.proof.instances[0] * step
                                                                           + step)):  # fmt: skip
        c = proven(tiny_circuit, round_, **lie)
        sig = signed(circuits, key, c)
        expect_revert("ProofRejected", lambda c=c, sig=sig: circuits.record_contribution(c, sig, 1,
                                                                                          proof=tiny_circuit.proof))
    c = proven(tiny_circuit, round_)
    circuits.record_contribution(c, signed(circuits, key, c), Status.SELECTED, proof=tiny_circuit.proof)
    assert circuits.get_record(RUN, round_, Account.from_key(key).address).proof_verified


def test_a_proof_is_verified_against_the_rounds_circuit(circuits, keys, tiny_circuit, other_circuit):
    """Finding 18.4: the old contract verified any proof with the one VKA it held, whatever the round's circuit."""
    key = keys["nodes"][1]
    unregistered = proof_round(circuits, "0x" + "ab" * 32)
    c = proven(tiny_circuit, unregistered, circuit_key="0x" + "ab" * 32)
    sig = signed(circuits, key, c)
    expect_revert("CircuitNotRegistered", lambda: circuits.record_contribution(c, sig, 1, proof=tiny_circuit.proof))
    circuits.record_contribution(c, sig, Status.SELECTED)  # without a proof it is recorded as before
    other = proof_round(circuits, OTHER)
    c = proven(tiny_circuit, other)  # signed for the tiny circuit, in a round of the other one
    sig = signed(circuits, key, c)
    expect_revert("CircuitMismatch", lambda: circuits.record_contribution(c, sig, 1, proof=tiny_circuit.proof))
    c = proven(tiny_circuit, other, circuit_key=OTHER)  # a tiny proof claimed as the other circuit's
    sig = signed(circuits, key, c)
    expect_revert("ProofRejected", lambda: circuits.record_contribution(c, sig, 1, proof=tiny_circuit.proof))
    c = proven(other_circuit, other, circuit_key=OTHER)
    circuits.record_contribution(c, signed(circuits, key, c), Status.SELECTED, proof=other_circuit.proof)


def test_only_canonical_proofs_are_accepted(circuits, keys, tiny_circuit, verifier):
    """Finding 18.7: junk appended to an honest proof still verifies (the verifier ignores it) under another
    hash; the registry takes only the circuit's exact proof length, so a proof hash names one proof."""
    honest = tiny_circuit.proof
    padded = EvmProof(honest.proof + b"\x00" * 32, honest.instances)
    call = verifier.functions.verifyProof(padded.proof, list(honest.instances), tiny_circuit.vka)
    returned = verifier.w3.eth.call({"to": verifier.address, "data": call._encode_transaction_data()})
    assert int.from_bytes(returned[:32], "big") == 1  # success (the rest is not ABI-decodable: see the interface)
    key = keys["nodes"][2]
    round_ = proof_round(circuits, TINY)
    c = proven(tiny_circuit, round_, proof=padded)
    sig = signed(circuits, key, c)
    err = expect_revert("NonCanonicalProof", lambda: circuits.record_contribution(c, sig, 1, proof=padded))
    assert f"exactly {len(honest.proof)} bytes" in str(err)


def test_a_contract_that_is_not_the_registry_is_refused(chain, keys, registry):
    """A wrong --registry (here the VkaStore contract) is refused by the code check, by the library and by the
    commands that talk to the registry: no "approved" with exit 0, no empty contributions list."""
    import os
    import subprocess
    import sys

    from contracts.artifacts import load_artifact

    w3 = connect(chain.rpc_url)
    other = load_artifact("VkaStore")
    address, _ = deploy_contract(w3, keys["owner"], other.abi, other.bytecode, [bytes(32)])
    assert Registry.at(w3, registry.address).address == registry.address  # the real one passes
    with pytest.raises(ChainError, match="is not this zk0 version's ContributionRegistry"):
        Registry.at(w3, address)
    env = {**os.environ, "ZK0_OWNER_KEY": keys["owner"], "HF_HUB_OFFLINE": "1"}
    stranger = Account.from_key(keys["stranger"]).address
    for args in (["approve", stranger], ["contributions"]):
        result = subprocess.run([sys.executable, "-m", "aggregator.cli", *args, "--chain-rpc", chain.rpc_url,
                                 "--registry", address], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "not this zk0 version's ContributionRegistry" in result.stderr
    assert not registry.is_approved(stranger)


# ---------------------------------------------------------------------------------------------- runs, batches
RUN_B = "0x" + "b2" * 32


def test_a_reply_signed_in_one_run_is_refused_in_another(registry, keys):
    """Issue 19.1: the same round number and global model in two runs; a reply signed for run A cannot be recorded
    in run B, neither as it is (RunMismatch) nor rewritten to B (the signature then names nobody approved)."""
    number = next(_rounds)
    registry.open_round(RUN, number, GLOBAL, CIRCUIT)
    registry.open_round(RUN_B, number, GLOBAL, CIRCUIT)
    key = keys["nodes"][0]
    c = make_contribution(number)  # run A
    signature = signed(registry, key, c)
    err = expect_revert("RunMismatch", lambda: registry.record_contributions(RUN_B, number, [
        Entry(c, signature, Status.SELECTED)]))
    assert RUN in str(err) and RUN_B in str(err)
    moved = make_contribution(number, run_id=RUN_B)
    err = expect_revert("SignerNotApproved", lambda: registry.record_contribution(moved, signature, Status.SELECTED))
    assert Account.from_key(key).address not in str(err)
    assert not registry.has_record(RUN_B, number, Account.from_key(key).address)
    registry.record_contribution(c, signature, Status.SELECTED)  # in its own run it is the node's reply
    assert registry.has_record(RUN, number, Account.from_key(key).address)


def test_a_second_run_gets_its_own_rounds_and_records(chain, keys):
    """Issue 19.1: a second run on the same registry restarts at round 1; the first run's rounds and records stay
    as they were, and each run's records are read back apart."""
    w3 = connect(chain.rpc_url)
    owner = Registry.deploy(w3, keys["owner"], Account.from_key(keys["aggregator"]).address)
    nodes = [Account.from_key(k) for k in keys["nodes"]]
    for node in nodes:
        owner.approve_node(node.address)
    agg = owner.with_sender(keys["aggregator"])
    outcomes = {RUN: [Status.SELECTED, Status.NOT_SELECTED, Status.SELECTED],
                RUN_B: [Status.NOT_SELECTED, Status.SELECTED, Status.NOT_SELECTED]}
    for run, statuses in outcomes.items():
        agg.open_round(run, 1, GLOBAL, CIRCUIT)
        entries = []
        for node, status in zip(nodes, statuses, strict=True):
            c = make_contribution(1, run_id=run, update_hash="0x" + node.address[2:].lower() + "00" * 12)
            entries.append(Entry(c, signed(agg, node.key, c), status, score=0.5))
        agg.record_contributions(run, 1, entries)
        agg.close_round(run, 1, "0x" + ("98" if run == RUN else "99") * 32)
    assert [r["run_id"] for r in agg.runs()] == [RUN, RUN_B]
    for run, statuses in outcomes.items():
        assert [r.status for r in agg.round_records(run, 1)] == statuses
        assert agg.round_info(run, 1).new_global_hash == "0x" + ("98" if run == RUN else "99") * 32
        for node, status in zip(nodes, statuses, strict=True):
            assert agg.get_record(run, 1, node.address).status == status  # the event matches the stored hash
    history = agg.node_history(nodes[0].address)
    assert [(r.run_id, r.status) for r in history] == [(RUN, Status.SELECTED), (RUN_B, Status.NOT_SELECTED)]


def test_records_are_batched_stored_as_hashes_and_checked_when_read(registry, keys, open_round):
    """One transaction records a round's replies; storage keeps one hash per record (what Python computes too);
    one refused entry refuses the batch; a record that is not the chain's is refused by rewardOf."""
    nodes = [Account.from_key(k) for k in keys["nodes"]]
    entries = []
    for i, node in enumerate(nodes):
        c = make_contribution(open_round, update_hash="0x" + f"{i + 1:02x}" * 32)
        entries.append(Entry(c, signed(registry, node.key, c), Status.SELECTED, score=0.5, weight=0.1 * (i + 1)))
    twice = entries[0]  # the same node's reply twice in one batch
    expect_revert("AlreadyRecorded", lambda: registry.record_contributions(RUN, open_round, [*entries, twice]))
    assert not any(registry.has_record(RUN, open_round, n.address) for n in nodes)  # all or nothing
    receipt = registry.record_contributions(RUN, open_round, entries)
    assert len(registry.contract.events.ContributionRecorded().process_receipt(receipt)) == 3
    for entry, node in zip(entries, nodes, strict=True):
        expected = Record.signed_outcome(entry.contribution, node.address, entry.status, entry.reason, entry.score,
                                         entry.weight)
        assert registry.record_hash(RUN, open_round, node.address) == expected.hash()
        assert registry.contract.functions.hashRecord(expected.chain).call() == bytes.fromhex(expected.hash()[2:])
    assert registry.round_info(RUN, open_round).weight_total == pytest.approx(0.6)
    record = registry.get_record(RUN, open_round, nodes[0].address)
    forged = Record.from_chain((*record.chain[:13], record.chain[13] * 10))  # a higher weight than the chain's
    expect_revert("RecordMismatch", lambda: registry.reward_of(forged))
    assert registry.reward_of(record) == 0  # the round is still open
