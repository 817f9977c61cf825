"""The circuit's Solidity verifier (EZKL's *reusable* Halo2 verifier) and the calldata of its verifyProof.

The reusable verifier is one contract for any circuit; a circuit is described by its verifying-key artifact
(VKA, ``ezkl.create_evm_vka``: a list of 32-byte words) that is registered once (``registerVka(bytes32[])``)
and passed with every call::

    verifyProof(bytes proof, uint256[] instances, bytes32[] vka)
        returns (bool success, bytes32 vka_digest, int256[] rescaled_instances)

A valid proof returns success; an invalid one reverts. The input commitments (W_g, b_g, W_n, b_n, X_g, X_n, Y) are
the first 64-byte words of ``proof`` (x ‖ y, big-endian; ``prover.commitments``): a contract that wants the
binding check on chain compares those words with the commitments the aggregator published.

For the contracts side::

    art = build_evm_verifier(circuit, out_dir)          # abi, bytecode, vka, runtime_size (< 24 KB, EIP-170)
    # deploy art.bytecode with art.abi (web3), then registerVka(art.vka) once
    args = evm_calldata(artifact, art.vka)             # per proof
    contract.functions.verifyProof(*args.as_tuple()).call()
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import ezkl
from eth_utils import keccak

from prover.circuit import Circuit
from prover.errors import ProverError
from prover.prove import ProofArtifact

log = logging.getLogger(__name__)

VERIFIER_CONTRACT = "Halo2VerifierReusable"
SOLC_VERSION = "0.8.28"
EIP170_LIMIT = 24_576  # bytes of runtime code a contract may have on Ethereum mainnet
# keccak256 of the reusable verifier's runtime code, as this EZKL and SOLC_VERSION make it: one contract for every
# circuit, so a node derives the registry's circuit id (contracts.circuit_id_of) without compiling it. A test
# rebuilds the verifier and compares; an EZKL or solc upgrade changes it (and with it every circuit id).
REUSABLE_VERIFIER_CODEHASH = "0x0afe31c0a4361ecba79fa793d679e7f0d8dbb8ba8335818b62c7f367d11efd24"
VKA_FILE = "vka.bytes"
SAMPLE_PROOF = Path("evm") / "sample_proof.json"  # beside a circuit: its calibration slice's proof
SOLC_SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
_HOME_LOCK = threading.Lock()


class EvmBuildError(ProverError):
    """The Solidity verifier could not be generated or compiled."""


@dataclass(frozen=True)
class EvmVerifier:
    """The compiled reusable verifier and the circuit's VKA."""

    abi: list[dict]
    bytecode: str  # "0x…" creation code, for deployment
    runtime_size: int  # bytes of deployed code (EIP-170: at most 24,576)
    codehash: str  # keccak256 of the deployed code (REUSABLE_VERIFIER_CODEHASH for this EZKL and solc)
    vka: tuple[bytes, ...]  # 32-byte words, for registerVka and every verifyProof
    circuit_id: str
    solc_version: str

    def to_dict(self) -> dict:
        """JSON-ready artifact (hex strings) for the contracts engineer's deploy scripts."""
        return {"contract": VERIFIER_CONTRACT, "abi": self.abi, "bytecode": self.bytecode,
                "runtime_size": self.runtime_size, "codehash": self.codehash, "vka": ["0x" + w.hex() for w in self.vka],
                "circuit_id": self.circuit_id, "solc_version": self.solc_version}  # fmt: skip


@dataclass(frozen=True)
class VerifyProofArgs:
    """The arguments of ``verifyProof(bytes proof, uint256[] instances, bytes32[] vka)``."""

    proof: bytes
    instances: tuple[int, ...]
    vka: tuple[bytes, ...]

    def as_tuple(self) -> tuple[bytes, list[int], list[bytes]]:
        """For web3: ``contract.functions.verifyProof(*args.as_tuple())``."""
        return self.proof, list(self.instances), list(self.vka)


def read_vka(path: str | Path) -> tuple[bytes, ...]:
    """The words of a VKA file (bincode ``Vec<[u8; 32]>``: 8-byte little-endian count, then the words)."""
    raw = Path(path).read_bytes()
    count = int.from_bytes(raw[:8], "little")
    if len(raw) != 8 + 32 * count:
        raise EvmBuildError(f"{path} is not an EZKL VKA file ({len(raw)} bytes, header says {count} words)")
    return tuple(raw[8 + 32 * i : 40 + 32 * i] for i in range(count))


def _run_async(fn, *args):
    async def call():
        return await fn(*args)

    return asyncio.run(call())


def _solcjs() -> Path:
    candidates = [Path(os.environ["ZK0_NODE_MODULES"])] if "ZK0_NODE_MODULES" in os.environ else []
    candidates += [p / "node_modules" for p in (Path(__file__).resolve().parents[1], Path.cwd())]
    for folder in candidates:
        if (folder / ".bin" / "solcjs").exists():
            return folder / ".bin" / "solcjs"
    raise EvmBuildError("npm solc is not installed (node_modules/.bin/solcjs): run `make setup`")


def compile_solidity(source: str, name: str = "Verifier.sol") -> dict:
    """Compile one Solidity source with the pinned npm solcjs; return ``contracts[name]`` of its output."""
    solcjs = _solcjs()
    version = subprocess.run([str(solcjs), "--version"], capture_output=True, text=True, check=False).stdout
    if not version.strip().startswith(SOLC_VERSION):
        raise EvmBuildError(f"expected solc {SOLC_VERSION}, node_modules has {version.strip()!r}: run `make setup`")
    request = {"language": "Solidity", "sources": {name: {"content": source}}, "settings": SOLC_SETTINGS}
    # solcjs reads stdin with a blocking readFileSync, which fails (EAGAIN) on a pipe: give it a file instead.
    with tempfile.TemporaryFile("w+") as stdin:
        json.dump(request, stdin)
        stdin.seek(0)
        done = subprocess.run([str(solcjs), "--standard-json"], stdin=stdin, capture_output=True, text=True,
                              check=False)  # fmt: skip
    if done.returncode != 0:
        raise EvmBuildError(f"solcjs failed: {done.stderr.strip()[-2000:]}")
    output = json.loads(done.stdout[done.stdout.index("{") :])
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise EvmBuildError("solc errors:\n" + "\n".join(errors))
    return output["contracts"][name]


def build_evm_verifier(circuit: Circuit, out_dir: str | Path) -> EvmVerifier:
    """Render the reusable verifier and the VKA for ``circuit``, compile the verifier, and write
    ``Verifier.sol``, ``vka.bytes`` and ``evm_verifier.json`` (:meth:`EvmVerifier.to_dict`) to ``out_dir``.

    Warns when the runtime code exceeds EIP-170's 24 KB (it would only deploy on chains without the limit).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sol, abi_path = out / "Verifier.sol", out / "verifier_abi.json"
    srs, vk, settings = str(circuit.srs.path), str(circuit.vk), str(circuit.settings)
    # create_evm_verifier writes the .sol, then tries to download solc into $HOME/.svm and fails (no network):
    # point HOME at a scratch folder meanwhile; we compile with the pinned npm solc ourselves.
    sol.unlink(missing_ok=True)
    with _HOME_LOCK:
        home = os.environ.get("HOME")
        os.environ["HOME"] = str(out / ".home")
        try:
            _run_async(ezkl.create_evm_verifier, vk, settings, str(sol), str(abi_path), srs, True)
        except Exception as err:
            if not sol.is_file():
                raise EvmBuildError(f"ezkl could not render the Solidity verifier: {err}") from err
            log.debug("create_evm_verifier wrote %s, then failed after it (expected offline): %s", sol, err)
        finally:
            if home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = home
            shutil.rmtree(out / ".home", ignore_errors=True)
    compiled = compile_solidity(sol.read_text(), "Verifier.sol")[VERIFIER_CONTRACT]
    runtime = bytes.fromhex(compiled["evm"]["deployedBytecode"]["object"])
    artifact = EvmVerifier(
        abi=compiled["abi"],
        bytecode="0x" + compiled["evm"]["bytecode"]["object"],
        runtime_size=len(runtime),
        codehash="0x" + keccak(runtime).hex(),
        vka=circuit_vka(circuit),
        circuit_id=circuit.circuit_id,
        solc_version=SOLC_VERSION,
    )
    if artifact.runtime_size > EIP170_LIMIT:
        log.warning("verifier runtime code is %d bytes, over EIP-170's %d: it deploys only where the limit is "
                    "lifted (anvil --disable-code-size-limit)", artifact.runtime_size, EIP170_LIMIT)  # fmt: skip
    (out / "evm_verifier.json").write_text(json.dumps(artifact.to_dict(), indent=1))
    log.info("EVM verifier for %s: runtime %d bytes, VKA %d words", circuit.circuit_id, artifact.runtime_size,
             len(artifact.vka))  # fmt: skip
    return artifact


def circuit_vka(circuit: Circuit) -> tuple[bytes, ...]:
    """The circuit's VKA words (``ezkl.create_evm_vka``: milliseconds, deterministic), cached beside the circuit."""
    path = Path(circuit.dir) / VKA_FILE
    if not path.is_file():
        tmp = path.with_name(f"{VKA_FILE}.{os.getpid()}.tmp")
        _run_async(ezkl.create_evm_vka, str(circuit.vk), str(circuit.settings), str(tmp), str(circuit.srs.path))
        tmp.replace(path)
    return read_vka(path)


def sample_proof_length(circuit: Circuit) -> int:
    """The exact length of every proof of ``circuit``: that of its calibration slice's proof (proved once, kept in
    ``<circuit dir>/evm/sample_proof.json``, with which registration checks the deployed verifier)."""
    from prover.prove import prove
    from prover.synthetic import synthetic_slice

    path = Path(circuit.dir) / SAMPLE_PROOF
    if not path.is_file():
        sample = prove(circuit, synthetic_slice(circuit.shape, 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"sample_proof.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sample.ezkl_proof()))
        tmp.replace(path)
    return len(json.loads(path.read_text())["proof"])  # EZKL's proof JSON: the proof as a list of bytes


def evm_calldata(artifact: ProofArtifact, vka: tuple[bytes, ...] | list[bytes]) -> VerifyProofArgs:
    """What ``verifyProof`` needs for ``artifact``: the proof bytes, the instances as uint256 (EZKL stores
    them little-endian), and the circuit's VKA words."""
    instances = tuple(int.from_bytes(bytes.fromhex(felt), "little") for felt in artifact.instances)
    return VerifyProofArgs(proof=artifact.proof, instances=instances, vka=tuple(vka))
