"""Verify a node's proof against the global slice and the received update.

The checks run in the protocol's order (DESIGN.md §3 step 6), the first failure is the verdict:

1. ``BAD_PROOF``: the artifact is malformed, is for another circuit, EZKL rejects the proof, the proof is not
   canonical (bytes after the proof's end, which EZKL ignores: ``proof_hash`` must identify one proof), or the
   artifact's losses / data commitment are not the proof's, or its losses are negative (possible only with data
   outside the fixed-point range);
2. ``UNBOUND``: the proof's commitments to P_g = [W_g | b_g] and P_n = [W_n | b_n] are not those of the global
   slice and of the slice of the update actually received (the verifier commits them itself, quantized as the
   prover does);
3. ``NO_IMPROVEMENT``: loss_after ≥ loss_before.

A :class:`Verifier` holds what verification needs (vk, settings, SRS: no pk) and caches the global slice's
commitment, so checking many replies of one round commits P_g once: a reply costs one commitment (~0.07 s)
and EZKL's verification (~0.05 s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ezkl
import numpy as np

from prover.circuit import (
    ONNX_FILE,
    SETTINGS_FILE,
    VERIFIER_FILES,
    VK_FILE,
    Circuit,
    compute_circuit_id,
    read_meta,
    scales_of,
    shape_of,
)
from prover.commitments import data_commitment, kzg_commit, split_commitments
from prover.errors import CircuitFilesError, CircuitMismatchError
from prover.ezkl_process import scratch_dir
from prover.fixed_point import felt_to_float
from prover.prove import ProofArtifact
from prover.srs import SRS
from prover.statement import stack

log = logging.getLogger(__name__)

BAD_PROOF, UNBOUND, NO_IMPROVEMENT = "BAD_PROOF", "UNBOUND", "NO_IMPROVEMENT"
_CACHE_SIZE = 64


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`verify`: ``ok``, or the first failed check's ``reason`` and a message saying why."""

    ok: bool
    reason: str | None
    message: str
    loss_before: float | None = None
    loss_after: float | None = None
    data_commitment: str | None = None


class Verifier:
    """The verifier files of one circuit (``statement.onnx``, ``settings.json``, ``vk.key``) and its SRS."""

    def __init__(self, directory: str | Path, srs: SRS) -> None:
        directory = Path(directory)
        for name in VERIFIER_FILES:
            if not (directory / name).is_file():
                raise CircuitFilesError(f"{directory} lacks {name}: copy the circuit's verifier files there")
        meta = read_meta(directory)
        vk_digest = "0x" + hashlib.sha256((directory / VK_FILE).read_bytes()).hexdigest()
        if vk_digest != meta["vk_sha256"]:
            raise CircuitFilesError(f"{directory / VK_FILE} is corrupted (sha256 {vk_digest}, expected "
                                    f"{meta['vk_sha256']}): copy the verifier files again")  # fmt: skip
        self.circuit_id = compute_circuit_id(
            (directory / ONNX_FILE).read_bytes(), (directory / SETTINGS_FILE).read_bytes(), srs.sha256
        )
        if self.circuit_id != meta["circuit_id"]:
            raise CircuitMismatchError(
                f"{directory} is circuit {meta['circuit_id']}, but with SRS {srs.path} (sha256 {srs.sha256}) its "
                f"files give {self.circuit_id}: use the SRS the circuit was built with"
            )
        self.dir, self.srs = directory, srs
        self.shape = shape_of(directory / ONNX_FILE)
        scales = scales_of(directory / SETTINGS_FILE, self.shape)
        self.input_scale: int = scales["input_scale"]
        self.output_scales: tuple[int, ...] = scales["output_scales"]
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, bytes], list[bytes]] = OrderedDict()
        self.proof_len: int | None = None  # the circuit's one proof length, once a canonical proof showed it
        # How many commitments each input has in a proof (an input wider than a column gets several).
        shapes = self.shape.circuit_input_shapes()
        self.counts = [len(self.commit(i, np.zeros(s, np.float32))) for i, s in enumerate(shapes)]

    @property
    def vk(self) -> Path:
        return self.dir / VK_FILE

    @property
    def settings(self) -> Path:
        return self.dir / SETTINGS_FILE

    def commit(self, index: int, values: np.ndarray) -> list[bytes]:
        """Commitment(s) of input ``index`` holding ``values`` (cached by content)."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        key = (index, hashlib.sha256(values.tobytes()).digest())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        points = kzg_commit(values, self.input_scale, self.vk, self.settings, self.srs.path)
        with self._lock:
            self._cache[key] = points
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return points

    def check_proof(self, artifact: ProofArtifact) -> bool:
        """EZKL's verification of the proof and its public instances with this circuit's vk."""
        with scratch_dir("verify") as tmp:
            path = tmp / "proof.json"
            path.write_text(json.dumps(artifact.ezkl_proof()))
            return bool(ezkl.verify(str(path), str(self.settings), str(self.vk), str(self.srs.path), False))


    def is_canonical(self, artifact: ProofArtifact) -> bool:
        """Whether the (verified) proof has no byte past its end. EZKL reads a proof as a transcript and ignores
        whatever follows, so an honest proof with junk appended verifies with the same losses and another
        ``proof_hash``. Every proof of one circuit has the same length: it is learnt from the first proof whose
        one-byte-shorter prefix does not verify, then compared."""
        with self._lock:
            known = self.proof_len
        if known is not None:
            return len(artifact.proof) == known
        try:
            shorter_verifies = self.check_proof(dataclasses.replace(artifact, proof=artifact.proof[:-1]))
        except Exception:  # noqa: BLE001 - EZKL raises on a proof it cannot read to its end: what we want
            shorter_verifies = False
        if shorter_verifies:
            return False
        with self._lock:
            self.proof_len = len(artifact.proof)
        log.debug("circuit %s: proofs are %d bytes", self.circuit_id, len(artifact.proof))
        return True


def load_verifier(source: Circuit | str | Path, srs: SRS | None = None) -> Verifier:
    """A :class:`Verifier` for a built circuit, or for a folder of verifier files plus the SRS."""
    if isinstance(source, Circuit):
        return Verifier(source.dir, srs or source.srs)
    if srs is None:
        raise TypeError("load_verifier(folder, srs): a folder of verifier files needs the SRS too")
    return Verifier(source, srs)


def _reject(reason: str, message: str, **fields) -> Verdict:
    log.info("proof rejected: %s (%s)", reason, message)
    return Verdict(ok=False, reason=reason, message=message, **fields)


def verify(
    artifact: ProofArtifact | bytes,
    verifier: Verifier,
    W_g: np.ndarray,  # noqa: N803 (the statement's names)
    b_g: np.ndarray,
    W_n: np.ndarray,  # noqa: N803
    b_n: np.ndarray,
) -> Verdict:
    """Check a proof artifact against the global slice (W_g, b_g) and the received slice (W_n, b_n).

    The slices are the first A rows of ``action_out_proj`` (weight, bias) of the global model and of the update.
    """
    started = time.perf_counter()
    weights = {"W_g": W_g, "b_g": b_g, "W_n": W_n, "b_n": b_n}
    for index, (name, value) in enumerate(weights.items()):
        if np.shape(value) != verifier.shape.input_shapes()[index]:
            raise ValueError(f"{name} has shape {np.shape(value)}, the circuit's slice is {verifier.shape}")
    if not isinstance(artifact, ProofArtifact):
        try:
            artifact = ProofArtifact.from_bytes(artifact)
        except ValueError as err:
            return _reject(BAD_PROOF, f"malformed proof artifact: {err}")
    if artifact.circuit_id != verifier.circuit_id:
        return _reject(BAD_PROOF, f"circuit id mismatch: the proof is for {artifact.circuit_id}, "
                                  f"this round's circuit is {verifier.circuit_id}")  # fmt: skip
    if len(artifact.instances) != 2:
        return _reject(BAD_PROOF, f"the proof has {len(artifact.instances)} public values, expected 2 losses")
    try:
        valid = verifier.check_proof(artifact)
    except Exception as err:  # EZKL raises on undecodable proofs: that is the prover's fault, not ours
        return _reject(BAD_PROOF, f"EZKL rejected the proof: {err}")
    if not valid:
        return _reject(BAD_PROOF, "EZKL rejected the proof")
    if not verifier.is_canonical(artifact):
        return _reject(BAD_PROOF, f"the proof is not canonical: {len(artifact.proof)} bytes, this circuit's proofs "
                                  f"are {verifier.proof_len or 'shorter'} (bytes past the proof's end)")  # fmt: skip
    try:
        loss_before = felt_to_float(artifact.instances[0], verifier.output_scales[0])
        loss_after = felt_to_float(artifact.instances[1], verifier.output_scales[1])
        commitment = data_commitment(artifact.proof, verifier.counts)
        proof_points = split_commitments(artifact.proof, verifier.counts)
    except ValueError as err:
        return _reject(BAD_PROOF, f"undecodable proof: {err}")
    fields = {"loss_before": loss_before, "loss_after": loss_after, "data_commitment": commitment}
    if loss_before < 0 or loss_after < 0:
        # Sums of squares of fixed-point numbers are never negative; only features or targets outside the
        # fixed-point range (field elements the circuit does not range-check) make the sum wrap around.
        return _reject(BAD_PROOF, f"the proof's losses ({loss_before}, {loss_after}) are negative: its committed "
                                  f"data are not fixed-point numbers", **fields)  # fmt: skip
    if (artifact.loss_before, artifact.loss_after) != (loss_before, loss_after):
        return _reject(BAD_PROOF, f"the artifact's losses ({artifact.loss_before}, {artifact.loss_after}) are not "
                                  f"the proof's ({loss_before}, {loss_after})", **fields)  # fmt: skip
    if artifact.data_commitment != commitment:
        return _reject(BAD_PROOF, "the artifact's data_commitment is not the proof's", **fields)
    for index, (name, w, b) in enumerate((("global", W_g, b_g), ("node", W_n, b_n))):
        if verifier.commit(index, stack(w, b)) != proof_points[index]:
            whose = "this round's global model" if name == "global" else "the update received"
            return _reject(UNBOUND, f"the proof's commitment to the {name} slice (W_{name[0]}, b_{name[0]}) is not "
                                    f"that of {whose}", **fields)  # fmt: skip
    if not loss_after < loss_before:
        return _reject(NO_IMPROVEMENT, f"loss_after {loss_after:.6g} is not below loss_before {loss_before:.6g}",
                       **fields)  # fmt: skip
    log.debug("proof verified in %.3f s", time.perf_counter() - started)
    return Verdict(ok=True, reason=None, message="verified", **fields)

