"""zk0 prover: the statement a node proves about its update, and its EZKL circuit, proofs and verification.

A round, from the prover's side::

    circuit = build_circuit(SliceShape(actions=6, hidden=720, rows=32), srs, cache_dir)   # once per federation
    slice_ = capture_slice(policy, global_state, node_state, batch, rows=32, action_dim=6, seed=seed)
    artifact = prove(circuit, slice_)                                                      # node
    verdict = verify(artifact, load_verifier(circuit), W_g, b_g, W_n, b_n)                 # aggregator

The Solidity verifier and verifyProof calldata: ``prover.evm`` (``build_evm_verifier``, ``evm_calldata``).
See docs/trust-model.md for what a proof guarantees and what it does not, docs/benchmarks.md for costs.
"""

from prover.capture import Slice, capture_slice
from prover.circuit import Circuit, CircuitConfig, build_circuit, circuit_from_files, open_circuit
from prover.errors import CircuitFilesError, CircuitMismatchError, ProverError, SliceRangeError, SRSError
from prover.hashing import file_sha256, params_hash, sha256_hex
from prover.prove import ProofArtifact, prove
from prover.srs import SRS, dev_srs, load_srs, srs_file_logrows
from prover.statement import SliceLoss, SliceShape, export_onnx, stack, statement_losses
from prover.verify import BAD_PROOF, NO_IMPROVEMENT, UNBOUND, Verdict, Verifier, load_verifier, verify

__all__ = [
    "BAD_PROOF",
    "NO_IMPROVEMENT",
    "SRS",
    "UNBOUND",
    "Circuit",
    "CircuitConfig",
    "CircuitFilesError",
    "CircuitMismatchError",
    "ProofArtifact",
    "ProverError",
    "SRSError",
    "Slice",
    "SliceLoss",
    "SliceRangeError",
    "SliceShape",
    "Verdict",
    "Verifier",
    "build_circuit",
    "capture_slice",
    "circuit_from_files",
    "dev_srs",
    "export_onnx",
    "file_sha256",
    "load_srs",
    "load_verifier",
    "open_circuit",
    "params_hash",
    "prove",
    "sha256_hex",
    "srs_file_logrows",
    "stack",
    "statement_losses",
    "verify",
]
