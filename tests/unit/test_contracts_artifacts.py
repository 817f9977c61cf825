"""The committed contract artifacts match their sources and fit on a real chain (no compiler needed)."""

from __future__ import annotations

import json

from contracts.artifacts import ARTIFACT_DIR, SOURCE_DIR, load_artifact, source_sha256, stale_sources

EIP170_LIMIT = 24_576


def test_artifacts_are_built_from_the_current_sources():
    sources = {p.name for p in SOURCE_DIR.glob("*.sol")}
    artifacts = sorted(ARTIFACT_DIR.glob("*.json"))
    assert artifacts, "no artifacts: run `python scripts/build_contracts.py`"
    for path in artifacts:
        artifact = load_artifact(path.stem)
        own = {name for name in artifact.source_sha256 if not name.startswith("@")}
        assert own == sources, f"{path.name}: sources added or removed since the build"
        assert stale_sources(artifact) == [], f"{path.name} is stale: run `python scripts/build_contracts.py`"


def test_openzeppelin_sources_are_pinned_by_digest():
    """The OpenZeppelin files the registry imports are covered too: another npm version makes it stale."""
    artifact = load_artifact("ContributionRegistry")
    imported = {name for name in artifact.source_sha256 if name.startswith("@openzeppelin/contracts/")}
    assert {"@openzeppelin/contracts/access/Ownable2Step.sol", "@openzeppelin/contracts/utils/cryptography/EIP712.sol",
            "@openzeppelin/contracts/utils/cryptography/ECDSA.sol"} <= imported  # fmt: skip
    tampered = {**artifact.source_sha256, "@openzeppelin/contracts/access/Ownable2Step.sol": "0" * 64}
    assert stale_sources(artifact.__class__(**{**artifact.__dict__, "source_sha256": tampered})) == [
        "@openzeppelin/contracts/access/Ownable2Step.sol"
    ]


def test_staleness_is_detected(tmp_path):
    (tmp_path / "A.sol").write_text("contract A {}\n")
    artifact = load_artifact("ContributionRegistry")
    recorded = {"A.sol": source_sha256(tmp_path / "A.sol")}
    fresh = artifact.__class__(**{**artifact.__dict__, "source_sha256": recorded})
    assert stale_sources(fresh, tmp_path) == []
    (tmp_path / "A.sol").write_text("contract A { uint x; }\n")
    assert stale_sources(fresh, tmp_path) == ["A.sol"]


def test_registry_fits_eip170_and_has_its_interface():
    artifact = load_artifact("ContributionRegistry")
    assert artifact.solc_version.startswith("0.8.28")
    assert 0 < artifact.code_size <= EIP170_LIMIT
    names = {item.get("name") for item in artifact.abi}
    for name in ("approveNode", "revokeNode", "isApproved", "openRound", "closeRound", "recordContributions",
                 "recordContributionWithProof", "recordRejection", "registerCircuit", "recordHash", "hashRecord",
                 "roundInfo", "hasRecord", "runOpenedAt", "ContributionRecorded", "RunOpened", "RoundOpened",
                 "RoundClosed", "NodeApproved", "NodeRevoked", "LOSS_SCALE"):  # fmt: skip
        assert name in names, name


def test_artifact_records_the_build_settings():
    data = json.loads((ARTIFACT_DIR / "ContributionRegistry.json").read_text())
    assert data["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert data["bytecode"].startswith("0x") and data["deployedBytecode"].startswith("0x")


def test_every_contract_error_has_words_in_the_client():
    from contracts.registry import ERROR_TEXT

    errors = {item["name"]: len(item["inputs"]) for item in load_artifact("ContributionRegistry").abi
              if item["type"] == "error"}  # fmt: skip
    assert set(errors) == set(ERROR_TEXT)
    for name, arity in errors.items():
        ERROR_TEXT[name].format(*range(arity))  # every placeholder has an argument


def test_registry_code_check_allows_immutables_only():
    """The deployed code must be the artifact's; only solc's 32-byte zero words (immutables) may differ."""
    from dataclasses import replace

    from contracts.artifacts import load_artifact
    from contracts.identity import matches_artifact

    code = bytes(range(1, 40)) + bytes(32) + bytes(range(40, 90))  # one immutable word in the middle
    artifact = replace(load_artifact("ContributionRegistry"), deployed_bytecode="0x" + code.hex())
    filled = bytearray(code)
    filled[39:71] = bytes.fromhex("aa" * 12 + "11" * 20)  # an address the constructor wrote
    assert matches_artifact(code, artifact) and matches_artifact(bytes(filled), artifact)
    other = bytearray(filled)
    other[5] ^= 0xFF  # one byte of real code
    assert not matches_artifact(bytes(other), artifact)
    assert not matches_artifact(bytes(filled) + b"\x00", artifact)
    real = load_artifact("ContributionRegistry")
    assert matches_artifact(bytes.fromhex(real.deployed_bytecode[2:]), real)
