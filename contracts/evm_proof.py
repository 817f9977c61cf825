"""EZKL's proof and verifying-key artifact (VKA) files, as the arguments the reusable EVM verifier takes.

`verifyProof(bytes proof, uint256[] instances, bytes32[] vka)`: the proof is proof.json's `hex_proof`; the
instances are its field elements (stored little-endian hex there); the VKA is `create_evm_vka`'s file, a
bincode Vec<[u8; 32]> (8-byte little-endian length, then the 32-byte words).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EvmProof:
    proof: bytes
    instances: tuple[int, ...]

    @property
    def proof_hash(self) -> str:
        """ "0x" sha256 of the proof bytes: the node signs it; recordContributionWithProof checks it."""
        return "0x" + hashlib.sha256(self.proof).hexdigest()

    @classmethod
    def from_ezkl(cls, proof: dict[str, Any] | str | Path) -> EvmProof:
        """From an EZKL proof (the proof.json file, or its parsed dict)."""
        data = proof if isinstance(proof, dict) else json.loads(Path(proof).read_text())
        instances = tuple(int.from_bytes(bytes.fromhex(felt), "little") for row in data["instances"] for felt in row)
        return cls(proof=bytes.fromhex(data["hex_proof"].removeprefix("0x")), instances=instances)


def read_vka(path: str | Path) -> list[bytes]:
    """The 32-byte words of an EZKL VKA file (`ezkl.create_evm_vka`)."""
    raw = Path(path).read_bytes()
    count = int.from_bytes(raw[:8], "little")
    if len(raw) != 8 + 32 * count:
        raise ValueError(f"{path} is not an EZKL VKA file ({len(raw)} bytes, header says {count} words)")
    return [raw[8 + 32 * i : 40 + 32 * i] for i in range(count)]
