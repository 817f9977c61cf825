"""Compile contracts/src/*.sol with the pinned npm solc into contracts/artifacts/<Name>.json.

Each artifact holds the ABI, the creation and runtime bytecode, the compiler version and settings, and the
sha256 of every source it was built from, OpenZeppelin's imported files included (resolved from the pinned
npm package in node_modules; tests/unit/test_contracts_artifacts.py fails when one is stale).
Warnings fail the build too: the registry is small enough to keep warning-free.

    .venv/bin/python scripts/build_contracts.py
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.artifacts import ARTIFACT_DIR, SOURCE_DIR, source_sha256  # noqa: E402
from contracts.solc import SETTINGS, SolcError, collect_sources, compile_standard, source_path  # noqa: E402

log = logging.getLogger("build_contracts")
EIP170_LIMIT = 24_576


def build(source_dir: Path = SOURCE_DIR, artifact_dir: Path = ARTIFACT_DIR) -> list[Path]:
    """Compile every source in `source_dir`; write one artifact per deployable contract; return their paths."""
    own = sorted(p.name for p in source_dir.glob("*.sol"))
    sources = collect_sources(own, source_dir)
    output = compile_standard(sources, SETTINGS)
    warnings = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "warning"]
    if warnings:
        raise SolcError("warnings (fix them):\n" + "\n".join(warnings))
    digests = {name: source_sha256(source_path(name, source_dir)) for name in sorted(sources)}
    written = []
    for source_name, contracts in sorted(output["contracts"].items()):
        if source_name not in own:  # OpenZeppelin's libraries are inlined into ours
            continue
        for name, compiled in sorted(contracts.items()):
            runtime = compiled["evm"]["deployedBytecode"]["object"]
            if not runtime:  # interfaces and abstract contracts
                continue
            if len(runtime) // 2 > EIP170_LIMIT:
                raise SolcError(f"{name} runtime is {len(runtime) // 2} bytes, over EIP-170's {EIP170_LIMIT}")
            artifact = {
                "contractName": name,
                "sourceName": source_name,
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + runtime,
                "compiler": {"name": "solc-js", "version": output["solcVersion"], "settings": SETTINGS},
                "sourceSha256": digests,
            }
            path = artifact_dir / f"{name}.json"
            path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
            log.info("%s: %d bytes runtime -> %s", name, len(runtime) // 2, path)
            written.append(path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build()
    except (SolcError, OSError) as err:
        log.error("build failed: %s", err)
        sys.exit(1)
