"""The committed build outputs (ABI + bytecode) of contracts/src, and the sources they were built from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "src"
ARTIFACT_DIR = PACKAGE_DIR / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: what web3 needs to deploy it and talk to it."""

    name: str
    abi: list[dict]
    bytecode: str  # creation code, 0x-hex
    deployed_bytecode: str  # runtime code, 0x-hex
    solc_version: str
    source_sha256: dict[str, str]  # source name -> sha256 of its text when this artifact was built

    @property
    def code_size(self) -> int:
        """Runtime code size in bytes (EIP-170 caps it at 24,576)."""
        return (len(self.deployed_bytecode) - 2) // 2


def source_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_artifact(name: str, directory: Path = ARTIFACT_DIR) -> Artifact:
    path = directory / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no artifact {path}: run `python scripts/build_contracts.py`")
    data = json.loads(path.read_text())
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        solc_version=data["compiler"]["version"],
        source_sha256=data["sourceSha256"],
    )


def stale_sources(artifact: Artifact, source_dir: Path = SOURCE_DIR) -> list[str]:
    """Source names whose text changed (or vanished) since `artifact` was built: our own sources, and the
    pinned npm packages' ("@openzeppelin/...", looked up in node_modules) it imports."""
    from contracts.npm import ToolNotFound
    from contracts.solc import source_path

    stale = []
    for name, digest in artifact.source_sha256.items():
        try:
            path = source_path(name, source_dir)
        except ToolNotFound:
            stale.append(name)
            continue
        if not path.is_file() or source_sha256(path) != digest:
            stale.append(name)
    return stale
