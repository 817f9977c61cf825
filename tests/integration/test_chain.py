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
    EvmProof,
    LocalChain,
    Reason,
    Registry,
    Status,
    connect,
    sign_contribution,
)
from contracts.testing import deploy_contract, make_tiny_circuit
from contracts.typed_data import signable

pytestmark = pytest.mark.integration

GLOBAL = "0x" + "11" * 32
CIRCUIT = "0x" + "cc" * 32
_rounds = itertools.count(100)


@pytest.fixture(scope="module")
def chain():
    with LocalChain() as local:
        yield local


@pytest.fixture(scope="module")
def keys(chain):
    """owner, aggregator, three approved nodes, one stranger (never approved)."""
    k = chain.private_keys
    return {"owner": k[0], "aggregator": k[1], "nodes": k[2:5], "stranger": k[5]}


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
    registry.open_round(number, GLOBAL, CIRCUIT)
    return number


def make_contribution(round_: int, **changes) -> Contribution:
    fields = dict(
        round=round_, global_hash=GLOBAL, update_hash="0x" + "22" * 32, proof_hash="0x" + "33" * 32,
        data_commitment="0x" + "44" * 32, loss_before=0.5, loss_after=0.25,
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
    agg.open_round(1, GLOBAL, CIRCUIT)
    assert agg.round_info(1).state == "open"

    c0 = make_contribution(1, loss_after=0.125)
    c1 = make_contribution(1, update_hash="0x" + "55" * 32, loss_before=0.5, loss_after=0.75)
    sig0, sig1 = signed(agg, nodes[0].key, c0), signed(agg, nodes[1].key, c1)
    message = signable(c0, chain.chain_id, agg.address)  # the contract and eth-account hash the same typed data
    digest = Web3.keccak(b"\x19" + message.version + message.header + message.body)
    assert agg.contract.functions.contributionDigest(c0.to_message()).call() == digest
    agg.record_contribution(c0, sig0, Status.SELECTED)
    agg.record_contribution(c1, sig1, Status.REJECTED, Reason.NO_IMPROVEMENT)
    agg.record_rejection(1, stranger, Reason.UNKNOWN_NODE, "0x" + "ee" * 32)
    agg.close_round(1, "0x" + "99" * 32)

    record = agg.get_record(1, nodes[0].address)
    assert (record.status, record.reason, record.signed, record.proof_verified) == (
        Status.SELECTED, Reason.NONE, True, False
    )  # fmt: skip
    assert (record.update_hash, record.loss_before, record.loss_after) == ("0x" + "22" * 32, 0.5, 0.125)
    rejection = agg.get_record(1, stranger)
    assert (rejection.status, rejection.reason, rejection.signed) == (Status.REJECTED, Reason.UNKNOWN_NODE, False)
    assert rejection.data_commitment == "0x" + "ee" * 32
    assert [r.node for r in agg.round_records(1)] == [nodes[0].address, nodes[1].address, stranger]
    assert [r.round for r in agg.node_history(nodes[1].address)] == [1]
    assert agg.get_record(2, nodes[0].address) is None and not agg.has_record(2, nodes[0].address)
    assert agg.has_record(1, nodes[0].address)
    info = agg.round_info(1)
    assert (info.state, info.global_hash, info.circuit_id, info.new_global_hash) == (
        "closed", GLOBAL, CIRCUIT, "0x" + "99" * 32
    )  # fmt: skip

    events = agg.events()
    assert [e["event"] for e in events if e["event"] not in ("OwnershipTransferred", "AggregatorChanged")] == [
        "NodeApproved", "NodeApproved", "RoundOpened",
        "ContributionRecorded", "ContributionRecorded", "ContributionRecorded", "RoundClosed",
    ]  # fmt: skip
    recorded = agg.events("ContributionRecorded")[0]["args"]
    assert (recorded["node"], recorded["status"], recorded["lossAfter"]) == (nodes[0].address, 1, 125_000_000)
    owner.revoke_node(nodes[1].address)
    assert not agg.is_approved(nodes[1].address) and agg.events("NodeRevoked")[0]["args"]["node"] == nodes[1].address


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
    address = Account.from_key(key).address
    expect_revert("AlreadyRecorded", lambda: registry.record_rejection(open_round, address, Reason.STALE))


def test_only_the_aggregator_records(registry, keys, open_round):
    c = make_contribution(open_round)
    signature = signed(registry, keys["nodes"][0], c)
    owner = registry.with_sender(keys["owner"])
    expect_revert("NotAggregator", lambda: owner.record_contribution(c, signature, Status.SELECTED))
    expect_revert("NotAggregator", lambda: owner.record_rejection(open_round, keys_address(keys), Reason.MALFORMED))
    expect_revert("NotAggregator", lambda: owner.open_round(next(_rounds), GLOBAL, CIRCUIT))
    expect_revert("NotOwner", lambda: registry.approve_node(keys_address(keys)))


def keys_address(keys) -> str:
    return Account.from_key(keys["stranger"]).address


def test_rounds_that_are_not_open_are_refused(registry, keys):
    never_opened = next(_rounds)
    c = make_contribution(never_opened)
    key = keys["nodes"][0]
    expect_revert("RoundNotOpen", lambda: registry.record_contribution(c, signed(registry, key, c), 1))
    expect_revert("RoundNotOpen", lambda: registry.record_rejection(never_opened, keys_address(keys), 1))
    closed = next(_rounds)
    registry.open_round(closed, GLOBAL, CIRCUIT)
    registry.close_round(closed, "0x" + "99" * 32)
    c = make_contribution(closed)
    err = expect_revert("RoundNotOpen", lambda: registry.record_contribution(c, signed(registry, key, c), 1))
    assert f"round {closed} is not open" in str(err)
    expect_revert("RoundAlreadyOpened", lambda: registry.open_round(closed, GLOBAL, CIRCUIT))


def test_stale_global_hash_and_invalid_outcomes_are_refused(registry, keys, open_round):
    key = keys["nodes"][1]
    stale = make_contribution(open_round, global_hash="0x" + "77" * 32)
    stale_sig = signed(registry, key, stale)
    err = expect_revert("GlobalHashMismatch", lambda: registry.record_contribution(stale, stale_sig, 1))
    assert "stale" in str(err)
    c = make_contribution(open_round)
    sig = signed(registry, key, c)
    expect_revert("InvalidOutcome", lambda: registry.record_contribution(c, sig, Status.SELECTED, Reason.BAD_PROOF))
    expect_revert("InvalidOutcome", lambda: registry.record_rejection(open_round, keys_address(keys), Reason.BAD_PROOF))
    registry.record_contribution(c, sig, Status.NOT_SELECTED, Reason.NO_QUORUM)


# ---------------------------------------------------------------------------------------------- proofs
@pytest.fixture(scope="module")
def tiny_circuit(tmp_path_factory):
    return make_tiny_circuit(tmp_path_factory.mktemp("tiny-circuit"))


def test_on_chain_proof_verification(chain, registry, keys, tiny_circuit, open_round):
    key = keys["nodes"][2]
    node = Account.from_key(key).address
    honest = tiny_circuit.proof
    c = make_contribution(open_round, proof_hash=honest.proof_hash)
    signature = signed(registry, key, c)
    expect_revert("VerifierNotSet", lambda: registry.record_contribution(c, signature, 1, proof=honest))

    w3 = connect(chain.rpc_url)
    verifier, _ = deploy_contract(w3, keys["owner"], tiny_circuit.verifier_abi, tiny_circuit.verifier_bytecode)
    registry.with_sender(keys["owner"]).set_verifier(verifier, tiny_circuit.vka)
    assert registry.contract.functions.vka().call() == tiny_circuit.vka

    flipped = bytearray(honest.proof)
    flipped[200] ^= 1
    tampered = EvmProof(bytes(flipped), honest.instances)
    # a proof other than the one the node signed
    err = expect_revert("ProofHashMismatch", lambda: registry.record_contribution(c, signature, 1, proof=tampered))
    assert tampered.proof_hash in str(err)
    # a node that signed a tampered proof, or a tampered public instance: the verifier says no
    c_bad = make_contribution(open_round, proof_hash=tampered.proof_hash)
    sig_bad = signed(registry, key, c_bad)
    expect_revert("ProofRejected", lambda: registry.record_contribution(c_bad, sig_bad, 1, proof=tampered))
    bad_instance = EvmProof(honest.proof, (honest.instances[0] + 1, *honest.instances[1:]))
    expect_revert("ProofRejected", lambda: registry.record_contribution(c, signature, 1, proof=bad_instance))
    assert not registry.has_record(open_round, node)

    registry.record_contribution(c, signature, Status.SELECTED, proof=honest)
    record = registry.get_record(open_round, node)
    assert record.proof_verified and record.signed and record.proof_hash == honest.proof_hash


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
