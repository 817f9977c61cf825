"""The circuit's reusable Solidity verifier: fits EIP-170, and on a real anvil accepts the honest proof and
rejects a tampered one. The circuit and the proof are the tiny ones of test_prover.py (cached per session)."""

from __future__ import annotations

import dataclasses
import json

import ezkl
import pytest
from eth_account import Account
from web3 import Web3

from contracts.local_chain import LocalChain
from prover import build_circuit, prove
from prover.evm import EIP170_LIMIT, build_evm_verifier, evm_calldata
from prover.fixed_point import felt_to_int, felts_from_ints
from prover.statement import SliceShape
from prover.synthetic import synthetic_slice

pytestmark = pytest.mark.integration

SHAPE = SliceShape(actions=6, hidden=48, rows=16)  # as in test_prover.py: the circuit is reused from the cache


@pytest.fixture(scope="module")
def setup(cache_dir, tmp_path_factory):
    circuit = build_circuit(SHAPE, "dev", cache_dir / "prover")
    artifact = prove(circuit, synthetic_slice(SHAPE, seed=1))
    evm = build_evm_verifier(circuit, tmp_path_factory.mktemp("evm"))
    return circuit, artifact, evm


def send(w3: Web3, key: str, tx: dict) -> dict:
    account = Account.from_key(key)
    tx = {**tx, "from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
    tx.setdefault("gas", w3.eth.estimate_gas(tx))
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(
        {**tx, "chainId": w3.eth.chain_id, "gasPrice": w3.eth.gas_price}).raw_transaction))  # fmt: skip
    assert receipt["status"] == 1
    return receipt


def test_verifier_fits_eip170_and_is_written(setup):
    circuit, _, evm = setup
    assert 0 < evm.runtime_size < EIP170_LIMIT
    assert evm.circuit_id == circuit.circuit_id and len(evm.vka) > 10
    assert any(f["name"] == "verifyProof" for f in evm.abi if f.get("type") == "function")


def test_calldata_matches_ezkl_encoding(setup, tmp_path):
    _, artifact, evm = setup
    args = evm_calldata(artifact, evm.vka)
    proof_path, vka_path = tmp_path / "proof.json", tmp_path / "vka.bytes"
    proof_path.write_text(json.dumps(artifact.ezkl_proof()))
    vka_path.write_bytes(len(evm.vka).to_bytes(8, "little") + b"".join(evm.vka))
    expected = bytes(ezkl.encode_evm_calldata(str(proof_path), str(tmp_path / "calldata.bytes"), str(vka_path)))
    ours = Web3().eth.contract(abi=evm.abi).encode_abi("verifyProof", args.as_tuple())
    assert bytes.fromhex(ours.removeprefix("0x")) == expected


def test_anvil_accepts_the_honest_proof_and_rejects_a_tampered_one(setup):
    _, artifact, evm = setup
    with LocalChain() as chain:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        key = chain.private_keys[0]
        address = send(w3, key, {"data": evm.bytecode})["contractAddress"]
        contract = w3.eth.contract(address=address, abi=evm.abi)
        send(w3, key, {"to": address, "data": contract.encode_abi("registerVka", [list(evm.vka)])})
        args = evm_calldata(artifact, evm.vka)
        call = {"to": address, "data": contract.encode_abi("verifyProof", args.as_tuple())}
        assert int.from_bytes(w3.eth.call(call)[:32], "big") == 1
        assert w3.eth.estimate_gas(call) < 3_000_000
        lowered = felts_from_ints([felt_to_int(artifact.instances[1]) - 1000])[0]
        forged = dataclasses.replace(artifact, instances=(artifact.instances[0], lowered))
        tampered = evm_calldata(forged, evm.vka)
        with pytest.raises(Exception):  # noqa: B017 (the verifier reverts without data)
            w3.eth.call({"to": address, "data": contract.encode_abi("verifyProof", tampered.as_tuple())})
