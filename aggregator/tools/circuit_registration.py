"""Register the federation's circuit in the registry, so the chain itself can judge its proofs.

On-chain proof verification (``recordContributionWithProof``) and trustless slashing (``slashBadProof``) both run
the round's circuit through EZKL's reusable Solidity verifier. The owner does it once per circuit:

1. build the verifier and the circuit's VKA (``prover.evm.build_evm_verifier``);
2. prove the circuit's calibration slice once: its length is the exact length of every proof of the circuit
   (the contract refuses others), and it checks the verifier accepts an honest proof before anything is paid;
3. deploy the verifier and ``registerCircuit(verifier, vka, proof_length, output_scales)``, which returns the
   circuit's id on the registry (``circuitIdOf`` the verifier's code hash, the VKA, the proof length and the scales:
   ``registry_circuit_id``), what rounds name and nodes sign.

Steps 1-2 are cached beside the circuit (``<circuit dir>/evm``); step 3 happens once per registry: a circuit
already registered there is reused as it is (its verifying key never changes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from contracts import ChainError, CircuitInfo, Registry

log = logging.getLogger(__name__)

EVM_DIR = "evm"
REGISTRATION_FILE = "registration.json"


@dataclass(frozen=True)
class EvmRegistration:
    """What ``registerCircuit`` needs for one circuit, besides a deployed verifier."""

    circuit_id: str
    abi: list[dict]
    bytecode: str
    vka: tuple[bytes, ...]
    proof_length: int
    output_scales: tuple[int, int]

    def to_dict(self) -> dict:
        return {"circuit_id": self.circuit_id, "abi": self.abi, "bytecode": self.bytecode,
                "vka": ["0x" + w.hex() for w in self.vka], "proof_length": self.proof_length,
                "output_scales": list(self.output_scales)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> EvmRegistration:
        return cls(d["circuit_id"], d["abi"], d["bytecode"], tuple(bytes.fromhex(w[2:]) for w in d["vka"]),
                   int(d["proof_length"]), tuple(d["output_scales"]))  # fmt: skip


def evm_registration(circuit) -> EvmRegistration:
    """The verifier, VKA, proof length and output scales of ``circuit`` (built once, then read from its folder)."""
    from prover.evm import build_evm_verifier, sample_proof_length

    path = Path(circuit.dir) / EVM_DIR / REGISTRATION_FILE
    if path.is_file():
        cached = EvmRegistration.from_dict(json.loads(path.read_text()))
        if cached.circuit_id == circuit.circuit_id:
            return cached
    verifier = build_evm_verifier(circuit, path.parent)
    before, after = circuit.output_scales[:2]
    registration = EvmRegistration(circuit.circuit_id, verifier.abi, verifier.bytecode, verifier.vka,
                                   sample_proof_length(circuit), (int(before), int(after)))
    path.write_text(json.dumps(registration.to_dict(), indent=1))
    return registration


def ensure_circuit_registered(owner: Registry, circuit) -> tuple[CircuitInfo, bool]:
    """Register ``circuit`` in ``owner``'s registry unless it is there already; returns (its record, whether this
    call registered it). ``owner`` must send as the registry's owner."""
    from aggregator.protocol.verification import registry_circuit_id

    key = registry_circuit_id(circuit)
    info = owner.circuit(key)
    if info.registered:
        log.info("circuit %s is already registered as %s (verifier %s)", circuit.circuit_id, key, info.verifier)
        return info, False
    reg = evm_registration(circuit)
    deployed = owner._send(owner.w3.eth.contract(abi=reg.abi, bytecode=reg.bytecode).constructor(), "deploy verifier")
    address, gas = deployed["contractAddress"], deployed["gasUsed"]
    registered, _ = owner.register_circuit(address, list(reg.vka), reg.proof_length, reg.output_scales)
    _check_sample(owner, circuit, reg, address)  # the verifier knows the VKA once registered
    if registered != key:
        raise ChainError(f"the registry registered circuit {circuit.circuit_id} as {registered}, but nodes derive "
                         f"{key}: the deployed verifier's code is not prover.evm.REUSABLE_VERIFIER_CODEHASH's")
    log.info("registered circuit %s as %s: verifier %s (deploy gas %d)", circuit.circuit_id, key, address, gas)
    return owner.circuit(key), True


def _check_sample(owner: Registry, circuit, reg: EvmRegistration, verifier: str) -> None:
    """The deployed verifier must accept the circuit's own honest sample proof (else no proof of it ever holds)."""
    from contracts import EvmProof
    from prover.evm import SAMPLE_PROOF

    sample = Path(circuit.dir) / SAMPLE_PROOF
    if not sample.is_file():
        return
    proof = EvmProof.from_ezkl(sample)
    contract = owner.w3.eth.contract(address=verifier, abi=reg.abi)
    call = {"to": verifier, "data": contract.encode_abi("verifyProof", [proof.proof, list(proof.instances),
                                                                        list(reg.vka)])}  # fmt: skip
    try:  # the first return word is the success flag (the rest does not decode with the ABI: raw call)
        ok = int.from_bytes(owner.w3.eth.call(call)[:32], "big") == 1
    except Exception as err:  # noqa: BLE001 - the verifier reverts without data on a bad proof
        raise ChainError(f"the deployed verifier rejects circuit {reg.circuit_id}'s own sample proof: {err}") from None
    if not ok:
        raise ChainError(f"the deployed verifier rejects circuit {reg.circuit_id}'s own sample proof")


def federation_circuit(model: str, dataset: str, slice_rows: int, srs: str, cache_dir: str, seed: int = 0):
    """The circuit a run with these settings uses (what ``Verification.start`` builds): the statement's shape
    comes from the model's action expert, built for ``dataset``'s features (e.g. the held-out set)."""
    from aggregator.protocol.verification import federation_srs
    from node.contribution import slice_shape
    from node.datasets import load_metadata
    from node.model import make_smolvla
    from prover import build_circuit

    bundle = make_smolvla(model, load_metadata(dataset), Path(cache_dir), seed=seed)
    return build_circuit(slice_shape(bundle.policy, slice_rows), federation_srs(srs), cache_dir)
