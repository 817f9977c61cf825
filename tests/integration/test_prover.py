"""The prover end to end with real EZKL on the tiny slice (A=6, H=48 as the tiny SmolVLA, m=16).

One circuit is built per session (dev SRS, cached under the session's cache dir) and one honest proof is made;
each attack then edits what it needs and must be rejected with the right reason. The circuit's reusable
Solidity verifier is checked on a real anvil with the same proof.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time

import ezkl
import numpy as np
import pytest
import torch
from eth_account import Account
from web3 import Web3

from contracts.local_chain import LocalChain
from prover import (
    BAD_PROOF,
    NO_IMPROVEMENT,
    UNBOUND,
    CircuitFilesError,
    CircuitMismatchError,
    ProofArtifact,
    Slice,
    SliceLoss,
    SliceRangeError,
    SliceShape,
    build_circuit,
    circuit_from_files,
    load_srs,
    load_verifier,
    prove,
    verify,
)
from prover.evm import EIP170_LIMIT, REUSABLE_VERIFIER_CODEHASH, build_evm_verifier, evm_calldata
from prover.ezkl_process import call as ezkl_call
from prover.fixed_point import dequantize, felt_to_int, felts_from_ints
from prover.hashing import sha256_hex
from prover.synthetic import synthetic_slice

pytestmark = pytest.mark.integration

SHAPE = SliceShape(actions=6, hidden=48, rows=16)


def make_slice(seed: int, improve: bool = True) -> Slice:
    return synthetic_slice(SHAPE, seed=seed, improve=improve)


@pytest.fixture(scope="module")
def prover_cache(cache_dir):
    """The session's cache: the federation tests' circuit is this one (same statement, shape and dev SRS)."""
    return cache_dir


@pytest.fixture(scope="module")
def circuit(prover_cache):
    return build_circuit(SHAPE, "dev", prover_cache)


@pytest.fixture(scope="module")
def verifier(circuit):
    return load_verifier(circuit)


@pytest.fixture(scope="module")
def honest(circuit):
    slice_ = make_slice(seed=1)
    return slice_, prove(circuit, slice_)


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    """The same statement on another (random) dev SRS: what a node with the wrong SRS, or a forger, has."""
    return build_circuit(SHAPE, "dev", tmp_path_factory.mktemp("rogue-srs"))


def check(artifact, verifier, slice_, **replace):
    weights = {"W_g": slice_.W_g, "b_g": slice_.b_g, "W_n": slice_.W_n, "b_n": slice_.b_n, **replace}
    return verify(artifact, verifier, **weights)


def test_proving_leaves_the_callers_other_threads_running(circuit):
    """EZKL holds the GIL for a whole call; in process, a ClientApp's heartbeat thread starved for the length of a
    proof (47 s at real size) and Flower dropped the task. Proving runs in a child process, so a thread of ours
    keeps ticking: its longest pause must be a small part of the proof's duration."""
    gaps, stop = [], threading.Event()

    def tick():
        last = time.monotonic()
        while not stop.wait(0.02):
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    started = time.monotonic()
    prove(circuit, make_slice(7))
    took = time.monotonic() - started
    stop.set()
    ticker.join()
    assert max(gaps) < min(1.0, 0.5 * took), f"a thread paused {max(gaps):.2f} s during a {took:.2f} s proof"


def test_an_ezkl_failure_in_the_child_is_raised_with_its_message(tmp_path):
    with pytest.raises(RuntimeError, match="ezkl.gen_witness failed in its child process"):
        ezkl_call("gen_witness", str(tmp_path / "missing.json"), str(tmp_path / "missing.ezkl"),
                  str(tmp_path / "w.json"), None, None)


def test_honest_proof_verifies_and_losses_match_torch(honest, verifier, circuit):
    slice_, artifact = honest
    verdict = check(artifact, verifier, slice_)
    assert verdict.ok, verdict.message
    assert (verdict.loss_before, verdict.loss_after) == (artifact.loss_before, artifact.loss_after)
    assert verdict.data_commitment == artifact.data_commitment
    step = 2.0**-circuit.input_scale
    torch_before, torch_after = (t.item() for t in SliceLoss()(*(torch.from_numpy(a) for a in slice_.inputs())))
    quantized = Slice(*(dequantize(a, circuit.input_scale) for a in slice_.arrays())).losses()
    # Inputs are rounded to the step; the circuit rounds each rescaled intermediate to it too.
    assert artifact.loss_before == pytest.approx(quantized[0], abs=2 * step)
    assert artifact.loss_after == pytest.approx(quantized[1], abs=2 * step)
    assert artifact.loss_before == pytest.approx(torch_before, abs=4 * step)
    assert artifact.loss_after == pytest.approx(torch_after, abs=4 * step)
    assert artifact.loss_after < artifact.loss_before


def test_artifact_survives_the_wire(honest, verifier):
    slice_, artifact = honest
    data = artifact.to_bytes()
    assert ProofArtifact.from_bytes(data) == artifact
    assert check(data, verifier, slice_).ok


def test_one_step_change_in_W_n_is_unbound(honest, verifier, circuit):
    slice_, artifact = honest
    w_n = slice_.W_n.copy()
    w_n[2, 7] += 2.0**-circuit.input_scale  # one quantization step in one weight
    verdict = check(artifact, verifier, slice_, W_n=w_n)
    assert verdict.reason == UNBOUND and "node slice" in verdict.message
    b_n = slice_.b_n.copy()
    b_n[0] -= 2.0**-circuit.input_scale
    assert check(artifact, verifier, slice_, b_n=b_n).reason == UNBOUND


def test_global_model_of_another_round_is_unbound(honest, verifier):
    slice_, artifact = honest
    other_round = make_slice(seed=2)
    verdict = check(artifact, verifier, slice_, W_g=other_round.W_g)
    assert verdict.reason == UNBOUND and "global slice" in verdict.message


def test_flipped_proof_byte_is_bad_proof(honest, verifier):
    slice_, artifact = honest
    for position in (len(artifact.proof) // 2, 10, len(artifact.proof) - 1):  # body, a commitment, the tail
        proof = bytearray(artifact.proof)
        proof[position] ^= 0x01
        forged = dataclasses.replace(artifact, proof=bytes(proof), proof_hash=sha256_hex(bytes(proof)))
        verdict = check(forged, verifier, slice_)
        assert verdict.reason == BAD_PROOF, (position, verdict)


def test_edited_loss_instance_is_bad_proof(honest, verifier, circuit):
    slice_, artifact = honest
    # A forger claims a lower loss_after and keeps the artifact self-consistent: EZKL must refuse.
    lowered = felt_to_int(artifact.instances[1]) - 2**circuit.input_scale // 10
    instances = (artifact.instances[0], felts_from_ints([lowered])[0])
    forged = dataclasses.replace(artifact, instances=instances, loss_after=lowered / 2**circuit.input_scale)
    verdict = check(forged, verifier, slice_)
    assert verdict.reason == BAD_PROOF and "EZKL" in verdict.message
    # Editing only the artifact's float and not the proof is caught as well.
    verdict = check(dataclasses.replace(artifact, loss_after=artifact.loss_after - 0.1), verifier, slice_)
    assert verdict.reason == BAD_PROOF and "losses" in verdict.message


def test_corrupted_or_foreign_artifacts_are_bad_proof(honest, verifier):
    slice_, artifact = honest
    assert check(b"not json", verifier, slice_).reason == BAD_PROOF
    truncated = artifact.to_bytes()[:-40]
    assert "malformed" in check(truncated, verifier, slice_).message
    other_circuit = dataclasses.replace(artifact, circuit_id="0x" + "00" * 32)
    verdict = check(other_circuit, verifier, slice_)
    assert verdict.reason == BAD_PROOF and "circuit id mismatch" in verdict.message


def test_update_that_does_not_improve_is_no_improvement(circuit, verifier):
    worse = make_slice(seed=3, improve=False)
    artifact = prove(circuit, worse)
    assert artifact.loss_after > artifact.loss_before
    verdict = check(artifact, verifier, worse)
    assert verdict.reason == NO_IMPROVEMENT
    assert verdict.loss_before == artifact.loss_before


def test_proof_made_with_another_srs_is_bad_proof(honest, verifier, rogue):
    slice_, _ = honest
    assert rogue.srs.sha256 != verifier.srs.sha256 and rogue.circuit_id != verifier.circuit_id
    artifact = prove(rogue, slice_)
    assert check(artifact, verifier, slice_).reason == BAD_PROOF  # announced as another circuit
    disguised = dataclasses.replace(artifact, circuit_id=verifier.circuit_id)
    verdict = check(disguised, verifier, slice_)
    assert verdict.reason == BAD_PROOF and "EZKL" in verdict.message


def test_a_second_build_gives_the_same_circuit_and_vk(circuit, prover_cache, tmp_path_factory):
    # Same arguments, same cache: reused (no new setup), same id.
    again = build_circuit(SHAPE, "dev", prover_cache)
    assert again.dir == circuit.dir and again.circuit_id == circuit.circuit_id
    # Elsewhere, from scratch (export, calibration, compile, setup) on a copy of the same SRS: same id, same vk.
    node_dir = tmp_path_factory.mktemp("node")
    srs_copy = shutil.copyfile(circuit.srs.path, node_dir / "federation.srs")
    srs = load_srs(srs_copy, circuit.logrows, sha256=circuit.srs.sha256)
    rebuilt = build_circuit(SHAPE, srs, node_dir / "cache")
    assert rebuilt.circuit_id == circuit.circuit_id and rebuilt.dir != circuit.dir
    assert rebuilt.vk.read_bytes() == circuit.vk.read_bytes()
    assert rebuilt.settings.read_bytes() == circuit.settings.read_bytes()
    # A node given only the aggregator's shared files lands on the same circuit.
    files = circuit.shared_files()
    shared = circuit_from_files(files["statement.onnx"], files["settings.json"], srs, node_dir / "cache")
    assert shared.dir == rebuilt.dir
    shared.require_id(circuit.circuit_id)


def test_verifier_needs_no_proving_key(circuit, honest, tmp_path):
    slice_, artifact = honest
    exported = circuit.export_verifier(tmp_path / "verifier")
    assert sorted(p.name for p in exported.iterdir()) == ["circuit.json", "settings.json", "statement.onnx", "vk.key"]
    verifier = load_verifier(exported, circuit.srs)
    assert verifier.circuit_id == circuit.circuit_id
    assert check(artifact, verifier, slice_).ok


def test_clear_errors_for_mismatched_or_corrupted_circuit_files(circuit, rogue, tmp_path):
    with pytest.raises(CircuitMismatchError, match="circuit id mismatch"):
        circuit.require_id("0x" + "11" * 32)
    other_srs = rogue.srs  # same size, another file
    exported = circuit.export_verifier(tmp_path / "v")
    with pytest.raises(CircuitMismatchError, match="use the SRS the circuit was built with"):
        load_verifier(exported, other_srs)
    vk = exported / "vk.key"
    vk.write_bytes(vk.read_bytes()[:-10])
    with pytest.raises(CircuitFilesError, match="corrupted"):
        load_verifier(exported, circuit.srs)
    (exported / "circuit.json").write_text("{")
    with pytest.raises(CircuitFilesError, match="circuit.json"):
        load_verifier(exported, circuit.srs)


def test_out_of_range_slice_is_refused_before_ezkl(circuit, verifier):
    slice_ = make_slice(seed=4)
    huge = Slice(slice_.W_g, slice_.b_g, slice_.W_n, slice_.b_n, slice_.X_g * 1e4, slice_.X_n, slice_.Y)
    with pytest.raises(SliceRangeError, match="too large"):
        prove(circuit, huge)
    # Just below the bound the circuit still holds the losses: the bound is not an over-promise.
    shift = np.sqrt(0.9 * circuit.loss_bound - max(slice_.losses()))  # every target moved by `shift`
    near = Slice(slice_.W_g, slice_.b_g, slice_.W_n, slice_.b_n, slice_.X_g, slice_.X_n, slice_.Y - shift)
    assert 0.8 * circuit.loss_bound < max(near.losses()) < 0.99 * circuit.loss_bound
    artifact = prove(circuit, near)
    quantized = Slice(*(dequantize(a, circuit.input_scale) for a in near.arrays())).losses()
    assert (artifact.loss_before, artifact.loss_after) == pytest.approx(quantized, abs=2.0**-circuit.input_scale)
    assert check(artifact, verifier, near).reason in (None, NO_IMPROVEMENT)
    with pytest.raises(ValueError, match="does not match"):
        prove(circuit, Slice(*(np.zeros(s, np.float32) for s in SliceShape(6, 48, 8).input_shapes())))


def test_settings_have_no_timestamp(circuit):
    assert json.loads(circuit.settings.read_text())["timestamp"] == 0


# ----------------------------------------------------------------------------------------- EVM verifier


@pytest.fixture(scope="module")
def evm(circuit, tmp_path_factory):
    return build_evm_verifier(circuit, tmp_path_factory.mktemp("evm"))


def send(w3: Web3, key: str, tx: dict) -> dict:
    account = Account.from_key(key)
    tx = {**tx, "from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
    tx.setdefault("gas", w3.eth.estimate_gas(tx))
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(
        {**tx, "chainId": w3.eth.chain_id, "gasPrice": w3.eth.gas_price}).raw_transaction))  # fmt: skip
    assert receipt["status"] == 1
    return receipt


def test_evm_verifier_fits_eip170(circuit, evm):
    assert 0 < evm.runtime_size < EIP170_LIMIT
    assert evm.circuit_id == circuit.circuit_id and len(evm.vka) > 10
    assert any(f["name"] == "verifyProof" for f in evm.abi if f.get("type") == "function")


def test_evm_calldata_matches_ezkl_encoding(honest, evm, tmp_path):
    _, artifact = honest
    args = evm_calldata(artifact, evm.vka)
    proof_path, vka_path = tmp_path / "proof.json", tmp_path / "vka.bytes"
    proof_path.write_text(json.dumps(artifact.ezkl_proof()))
    vka_path.write_bytes(len(evm.vka).to_bytes(8, "little") + b"".join(evm.vka))
    expected = bytes(ezkl.encode_evm_calldata(str(proof_path), str(tmp_path / "calldata.bytes"), str(vka_path)))
    ours = Web3().eth.contract(abi=evm.abi).encode_abi("verifyProof", args.as_tuple())
    assert bytes.fromhex(ours.removeprefix("0x")) == expected


def test_anvil_accepts_the_honest_proof_and_rejects_a_tampered_one(honest, evm):
    _, artifact = honest
    with LocalChain() as chain:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        key = chain.private_keys[0]
        address = send(w3, key, {"data": evm.bytecode})["contractAddress"]
        # nodes derive the registry's circuit id with the pinned code hash, without compiling the verifier
        assert "0x" + Web3.keccak(w3.eth.get_code(address)).hex().removeprefix("0x") == evm.codehash
        assert evm.codehash == REUSABLE_VERIFIER_CODEHASH, "EZKL or solc changed the verifier: update the constant"
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


def test_only_canonical_proofs_verify(honest, verifier, circuit):
    """Junk after an honest proof's end (EZKL ignores it) would give the same losses another proof_hash: refused,
    so a proof hash identifies one proof; and so by a verifier that has not seen an honest proof yet."""
    slice_, artifact = honest
    for junk in (b"\x00", bytes(range(256)) * 4):
        padded = dataclasses.replace(artifact, proof=artifact.proof + junk,
                                     proof_hash=sha256_hex(artifact.proof + junk))
        fresh = load_verifier(circuit)  # learns the proof length from nothing but this proof
        verdict = check(padded, fresh, slice_)
        assert verdict.reason == BAD_PROOF and "not canonical" in verdict.message, verdict
        assert check(ProofArtifact.from_bytes(padded.to_bytes()), verifier, slice_).reason == BAD_PROOF
    assert check(artifact, verifier, slice_).ok
    assert verifier.proof_len == len(artifact.proof)
    assert check(dataclasses.replace(artifact, proof=artifact.proof[:-1],
                                     proof_hash=sha256_hex(artifact.proof[:-1])), verifier, slice_).reason == BAD_PROOF
