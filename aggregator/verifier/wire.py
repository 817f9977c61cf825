"""The verifier service's JSON wire format, defined once for the server and the client.

Arrays travel as ``{"shape": [...], "dtype": "float32", "data": base64 of little-endian C-order bytes}``: exact
(no float ↔ decimal round trip, so the service commits to the very bits the aggregator holds) and ~1.33 bytes
per byte. Every model validates everything it can (strict types, base64, sizes, finite values), so a bad request
becomes a 4xx that says what is wrong, never an error deeper in the service.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from prover import Verdict

HEX32 = r"^0x[0-9a-fA-F]{64}$"
MAX_DIMS = 4
Reason = Literal["BAD_PROOF", "UNBOUND", "NO_IMPROVEMENT"]
CircuitId = Annotated[str, StringConstraints(pattern=HEX32)]


def b64encode(data: bytes) -> str:
    """Standard base64, no line breaks."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (no stray characters), or ``ValueError`` naming ``what``."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WireArray(_Strict):
    """A float32 array: shape, dtype and base64 of its little-endian C-order bytes (validated on parse)."""

    shape: list[Annotated[int, Field(ge=0, le=2**31)]] = Field(max_length=MAX_DIMS)
    dtype: Literal["float32"]
    data: str
    _array: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _decode(self) -> WireArray:
        raw = b64decode(self.data, "data")
        expected = math.prod(self.shape) * 4
        if len(raw) != expected:
            raise ValueError(f"data holds {len(raw)} bytes, shape {self.shape} of float32 needs {expected}")
        array = np.frombuffer(raw, dtype="<f4").reshape(self.shape)
        if not np.isfinite(array).all():
            raise ValueError("values must be finite (no NaN or infinity)")
        self._array = array
        return self

    @property
    def array(self) -> np.ndarray:
        """The decoded array (read-only, native float32)."""
        return self._array

    @classmethod
    def from_numpy(cls, value: np.ndarray) -> WireArray:
        array = np.asarray(value, dtype="<f4", order="C")
        return cls(shape=list(array.shape), dtype="float32", data=b64encode(array.tobytes()))


class VerifyRequest(_Strict):
    """``POST /v1/verify``: a proof artifact (``ProofArtifact.to_bytes()``, base64) and the four slices."""

    circuit_id: CircuitId
    artifact: str
    W_g: WireArray
    b_g: WireArray
    W_n: WireArray
    b_n: WireArray
    _artifact: bytes = PrivateAttr()

    @model_validator(mode="after")
    def _decode(self) -> VerifyRequest:
        self._artifact = b64decode(self.artifact, "artifact")
        return self

    @property
    def artifact_bytes(self) -> bytes:
        return self._artifact

    def slices(self) -> dict[str, np.ndarray]:
        """The slices by name, in the statement's order."""
        return {"W_g": self.W_g.array, "b_g": self.b_g.array, "W_n": self.W_n.array, "b_n": self.b_n.array}

    @classmethod
    def build(cls, circuit_id: str, artifact: bytes, W_g, b_g, W_n, b_n) -> VerifyRequest:  # noqa: N803
        arrays = {name: WireArray.from_numpy(a) for name, a in (("W_g", W_g), ("b_g", b_g), ("W_n", W_n), ("b_n", b_n))}
        return cls(circuit_id=circuit_id, artifact=b64encode(artifact), **arrays)


class VerdictBody(_Strict):
    """``POST /v1/verify`` answer: ``prover.Verdict`` plus the seconds the check took in a worker."""

    ok: bool
    reason: Reason | None
    message: str
    loss_before: float | None
    loss_after: float | None
    data_commitment: str | None
    seconds: float

    @classmethod
    def from_verdict(cls, verdict: Verdict, seconds: float) -> VerdictBody:
        return cls(ok=verdict.ok, reason=verdict.reason, message=verdict.message, loss_before=verdict.loss_before,
                   loss_after=verdict.loss_after, data_commitment=verdict.data_commitment, seconds=seconds)  # fmt: skip

    def verdict(self) -> Verdict:
        return Verdict(ok=self.ok, reason=self.reason, message=self.message, loss_before=self.loss_before,
                       loss_after=self.loss_after, data_commitment=self.data_commitment)  # fmt: skip


class SliceDims(_Strict):
    """A circuit's slice: A action dimensions, H hidden width, m rows."""

    actions: int
    hidden: int
    rows: int


class CircuitInfo(_Strict):
    """``GET /v1/circuits/{id}``: what a circuit is, so a client can check it holds the same one."""

    circuit_id: str
    slice: SliceDims
    logrows: int
    input_scale: int
    srs_kind: Literal["dev", "public"]
    srs_sha256: str
    vk_sha256: str
    vk_bytes: int


class CircuitList(_Strict):
    circuits: list[CircuitInfo]


class Health(_Strict):
    ok: bool
    circuits: int
    workers: int


class ErrorBody(_Strict):
    """Every 4xx/5xx: a short machine-readable ``error`` and a ``message`` saying what to fix."""

    error: str
    message: str
