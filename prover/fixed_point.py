"""EZKL's fixed-point encoding of floats: v ↦ round(v · 2^scale) as a BN254 field element.

The verifier must commit to exactly the values the prover's witness holds, so the encoding is EZKL's own
(``ezkl.float_to_felt``); :func:`quantize` is its numpy mirror (rounding half away from zero), used for
reference computations and range checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import ezkl
import numpy as np

# BN254 scalar field modulus: the field the circuit computes in.
FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617


def quantize(values: np.ndarray, scale: int) -> np.ndarray:
    """round(values · 2^scale), half away from zero, as int64 (exact for float32 inputs)."""
    scaled = np.asarray(values, dtype=np.float64) * float(2**scale)
    return (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int64)


def dequantize(values: np.ndarray, scale: int) -> np.ndarray:
    """The floats the circuit actually sees for ``values`` (quantized then scaled back), float64."""
    return quantize(values, scale).astype(np.float64) / float(2**scale)


def to_felts(values: np.ndarray, scale: int) -> list[str]:
    """EZKL field elements (little-endian hex) of ``values`` flattened in C order, as the witness encodes them."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    kind = ezkl.PyInputType.F32
    return [ezkl.float_to_felt(float(v), scale, kind) for v in flat]


def felt_to_int(felt: str) -> int:
    """A little-endian hex field element (as in proof.json instances) as a signed integer in (−p/2, p/2]."""
    value = int.from_bytes(bytes.fromhex(felt.removeprefix("0x")), "little")
    if value >= FIELD_MODULUS:
        raise ValueError(f"{felt!r} is not a field element (≥ the BN254 modulus)")
    return value - FIELD_MODULUS if value > FIELD_MODULUS // 2 else value


def felt_to_float(felt: str, scale: int) -> float:
    """Decode a fixed-point field element at ``scale`` to a float."""
    return felt_to_int(felt) / float(2**scale)


def felts_from_ints(values: Sequence[int]) -> list[str]:
    """Signed integers as little-endian hex field elements (the inverse of :func:`felt_to_int`)."""
    return [(v % FIELD_MODULUS).to_bytes(32, "little").hex() for v in values]
