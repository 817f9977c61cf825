"""Prove the statement on a node's slice, and the proof artifact that travels to the aggregator."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass

import ezkl

from prover.capture import Slice
from prover.circuit import Circuit, write_input_json
from prover.commitments import counts_from_witness, data_commitment
from prover.errors import SliceRangeError
from prover.ezkl_process import call as ezkl_call
from prover.ezkl_process import scratch_dir
from prover.fixed_point import dequantize, felt_to_float
from prover.hashing import sha256_hex

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "zk0-proof/1"
EZKL_VERSION = ezkl.__version__
_HEX32 = re.compile(r"^0x[0-9a-f]{64}$")
_FELT = re.compile(r"^[0-9a-f]{64}$")
_MAX_PROOF_BYTES = 1 << 20


@dataclass(frozen=True)
class ProofArtifact:
    """A proof of the statement with its public values.

    ``instances`` are the proof's public field elements (little-endian hex, as in EZKL's proof.json):
    [loss_before, loss_after]. ``loss_before``/``loss_after`` are their decoded floats, ``data_commitment`` is
    "0x" sha256 of the (X_g, X_n, Y) commitments in the proof, ``proof_hash`` "0x" sha256 of ``proof``. The verifier
    recomputes all three from the proof; they are carried for signing and recording.
    """

    circuit_id: str
    proof: bytes
    instances: tuple[str, ...]
    loss_before: float
    loss_after: float
    data_commitment: str
    proof_hash: str

    def ezkl_proof(self) -> dict:
        """The proof as EZKL's proof.json (what ``ezkl.verify`` reads)."""
        return {"protocol": None, "instances": [list(self.instances)], "proof": list(self.proof),
                "hex_proof": "0x" + self.proof.hex(), "split": None, "pretty_public_inputs": None,
                "timestamp": None, "version": EZKL_VERSION}  # fmt: skip

    def to_bytes(self) -> bytes:
        """Canonical JSON (UTF-8, sorted keys)."""
        return json.dumps(
            {"format": ARTIFACT_FORMAT, "circuit_id": self.circuit_id, "proof": self.proof.hex(),
             "instances": list(self.instances), "loss_before": self.loss_before, "loss_after": self.loss_after,
             "data_commitment": self.data_commitment, "proof_hash": self.proof_hash},
            sort_keys=True, separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> ProofArtifact:
        """Parse :meth:`to_bytes` output; raise ``ValueError`` saying what is wrong on anything malformed."""
        try:
            obj = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as err:  # RecursionError: deep nesting
            raise ValueError(f"proof artifact is not UTF-8 JSON: {err}") from None
        if not isinstance(obj, dict):
            raise ValueError("proof artifact must be a JSON object")
        if obj.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"proof artifact format is {obj.get('format')!r}, expected {ARTIFACT_FORMAT!r}")
        expected = {"format", "circuit_id", "proof", "instances", "loss_before", "loss_after", "data_commitment",
                    "proof_hash"}  # fmt: skip
        if set(obj) != expected:
            raise ValueError(f"proof artifact fields are {sorted(obj)}, expected {sorted(expected)}")
        for key in ("circuit_id", "data_commitment", "proof_hash"):
            if not isinstance(obj[key], str) or not _HEX32.fullmatch(obj[key]):
                raise ValueError(f"proof artifact {key} must be '0x' + 64 lowercase hex digits")
        proof_hex = obj["proof"]
        if not isinstance(proof_hex, str) or not proof_hex or len(proof_hex) > 2 * _MAX_PROOF_BYTES:
            raise ValueError("proof artifact proof must be a non-empty hex string of at most 1 MiB")
        try:
            proof = bytes.fromhex(proof_hex)
        except ValueError:
            raise ValueError("proof artifact proof is not valid hex") from None
        instances = obj["instances"]
        if not isinstance(instances, list) or not all(isinstance(f, str) and _FELT.fullmatch(f) for f in instances):
            raise ValueError("proof artifact instances must be a list of 64-hex-digit field elements")
        for key in ("loss_before", "loss_after"):
            value = obj[key]
            try:
                finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            except OverflowError:  # a JSON integer too large for a float
                finite = False
            if not finite:
                raise ValueError(f"proof artifact {key} must be a finite number")
        if sha256_hex(proof) != obj["proof_hash"]:
            raise ValueError("proof artifact proof_hash is not the sha256 of its proof")
        return cls(circuit_id=obj["circuit_id"], proof=proof, instances=tuple(instances),
                   loss_before=float(obj["loss_before"]), loss_after=float(obj["loss_after"]),
                   data_commitment=obj["data_commitment"], proof_hash=obj["proof_hash"])  # fmt: skip


def check_range(circuit: Circuit, slice_: Slice) -> None:
    """Raise :class:`SliceRangeError` when a loss would not fit the circuit's range checks (EZKL would otherwise
    fail deep in witness generation with a decomposition error)."""
    quantized = Slice(*(dequantize(a, circuit.input_scale) for a in slice_.arrays()))
    worst = max(quantized.losses())
    if worst >= 0.99 * circuit.loss_bound:
        raise SliceRangeError(
            f"the slice's loss {worst:.4g} is too large for the circuit, which holds losses below "
            f"{circuit.loss_bound:.4g}: check the captured features and targets (are the actions normalized?), "
            f"or build the circuit with a smaller input_scale (each bit less multiplies the bound by 16)."
        )


def prove(circuit: Circuit, slice_: Slice) -> ProofArtifact:
    """Prove the statement on ``slice_`` with ``circuit``'s proving key."""
    if slice_.shape != circuit.shape:
        raise ValueError(f"slice shape {slice_.shape} does not match the circuit's {circuit.shape}")
    check_range(circuit, slice_)
    started = time.perf_counter()
    with scratch_dir("prove") as work:
        data = write_input_json(list(slice_.inputs()), work / "input.json")
        witness_path, proof_path = work / "witness.json", work / "proof.json"
        srs = str(circuit.srs.path)
        ezkl_call("gen_witness", str(data), str(circuit.compiled), str(witness_path), str(circuit.vk), srs)
        ezkl_call("prove", str(witness_path), str(circuit.compiled), str(circuit.pk), str(proof_path), srs)
        witness = json.loads(witness_path.read_text())
        proof_json = json.loads(proof_path.read_text())
    proof = bytes(proof_json["proof"])
    instances = tuple(proof_json["instances"][0])
    scale_before, scale_after = circuit.output_scales
    artifact = ProofArtifact(
        circuit_id=circuit.circuit_id,
        proof=proof,
        instances=instances,
        loss_before=felt_to_float(instances[0], scale_before),
        loss_after=felt_to_float(instances[1], scale_after),
        data_commitment=data_commitment(proof, counts_from_witness(witness)),
        proof_hash=sha256_hex(proof),
    )
    log.info("proved %s in %.1f s: loss %.6f -> %.6f", circuit.shape.label(), time.perf_counter() - started,
             artifact.loss_before, artifact.loss_after)  # fmt: skip
    return artifact
