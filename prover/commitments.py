"""KZG commitments of the statement's inputs, and where they sit in a proof.

With EZKL's ``polycommit`` input visibility each input is laid out in its own advice column(s) and committed
(unblinded) by the prover; the proof starts with those commitments, in input order, each point as 64 bytes
(x ‖ y, big-endian). An input larger than one column gets several. Anyone holding the values can recompute
them with ``ezkl.kzg_commit`` and compare, which is how the verifier binds P_g = [W_g | b_g] and P_n = [W_n | b_n].
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import ezkl
import numpy as np

from prover.fixed_point import to_felts
from prover.statement import INPUT_NAMES

POINT_BYTES = 64
DATA_INPUTS = tuple(INPUT_NAMES.index(name) for name in ("X_g", "X_n", "Y"))


def point_bytes(point) -> bytes:
    """An ``ezkl.PyG1Affine`` as it appears in a proof: x ‖ y, 32 bytes each, big-endian."""
    return bytes.fromhex(point.x)[::-1] + bytes.fromhex(point.y)[::-1]


def kzg_commit(values: np.ndarray, scale: int, vk: Path, settings: Path, srs: Path) -> list[bytes]:
    """The commitment(s) of one input holding ``values``, quantized exactly as the prover's witness is."""
    points = ezkl.kzg_commit(to_felts(values, scale), str(vk), str(settings), str(srs))
    return [point_bytes(p) for p in points]


def split_commitments(proof: bytes, counts: Sequence[int]) -> list[list[bytes]]:
    """The input commitments at the head of ``proof``: ``counts[i]`` points for input i, in order."""
    need = POINT_BYTES * sum(counts)
    if len(proof) < need:
        raise ValueError(f"proof has {len(proof)} bytes, too short to hold {sum(counts)} input commitments")
    out, offset = [], 0
    for count in counts:
        out.append([proof[offset + POINT_BYTES * j : offset + POINT_BYTES * (j + 1)] for j in range(count)])
        offset += POINT_BYTES * count
    return out


def data_commitment(proof: bytes, counts: Sequence[int]) -> str:
    """"0x" + sha256 of the (X_g, X_n, Y) commitments as they appear in ``proof``: the node's data commitment."""
    parts = split_commitments(proof, counts)
    return "0x" + hashlib.sha256(b"".join(p for i in DATA_INPUTS for p in parts[i])).hexdigest()


def counts_from_witness(witness: dict) -> list[int]:
    """Number of commitments per input, as EZKL's witness (gen_witness output) lists them."""
    return [len(c) for c in witness["processed_inputs"]["polycommit"]]
