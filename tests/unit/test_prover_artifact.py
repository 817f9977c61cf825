"""Proof artifacts: canonical JSON that round-trips, and a clear ValueError for anything malformed."""

from __future__ import annotations

import json

import pytest

from prover.commitments import POINT_BYTES, data_commitment, split_commitments
from prover.hashing import sha256_hex
from prover.prove import ProofArtifact


def make_artifact(proof: bytes = bytes(range(256)) * 2) -> ProofArtifact:
    return ProofArtifact(circuit_id="0x" + "ab" * 32, proof=proof, instances=("01" + "00" * 31, "02" + "00" * 31),
                         loss_before=1.25, loss_after=1.0, data_commitment="0x" + "cd" * 32,
                         proof_hash=sha256_hex(proof))  # fmt: skip


def test_round_trip():
    art = make_artifact()
    assert ProofArtifact.from_bytes(art.to_bytes()) == art
    assert art.to_bytes() == ProofArtifact.from_bytes(art.to_bytes()).to_bytes()
    ezkl_json = art.ezkl_proof()
    assert bytes(ezkl_json["proof"]) == art.proof and ezkl_json["instances"] == [list(art.instances)]


def edited(**changes) -> bytes:
    obj = json.loads(make_artifact().to_bytes())
    for key, value in changes.items():
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "format"),
        (edited(format="zk0-proof/0"), "format"),
        (edited(loss_after=KeyError), "fields"),
        (edited(extra=1), "fields"),
        (edited(circuit_id="0x1234"), "circuit_id"),
        (edited(proof="zz"), "not valid hex"),
        (edited(proof=""), "non-empty"),
        (edited(instances=["0x12"]), "instances"),
        (edited(instances="01"), "instances"),
        (edited(loss_before="1.0"), "loss_before"),
        (edited(loss_after=True), "loss_after"),
        (b'{"format": "zk0-proof/1", "loss_after": NaN}', "fields"),
        (edited(proof_hash="0x" + "00" * 32), "proof_hash"),
    ],
)
def test_malformed_artifacts_raise_value_error(data, match):
    with pytest.raises(ValueError, match=match):
        ProofArtifact.from_bytes(data)


def test_split_commitments_and_data_commitment():
    counts = [1, 1, 2, 2, 1]  # P_g, P_n, X_g, X_n, Y
    proof = bytes(i % 251 for i in range(POINT_BYTES * 8 + 100))
    parts = split_commitments(proof, counts)
    assert [len(p) for p in parts] == counts
    assert parts[2][1] == proof[3 * POINT_BYTES : 4 * POINT_BYTES]
    assert data_commitment(proof, counts) == sha256_hex(proof[2 * POINT_BYTES : 7 * POINT_BYTES])
    with pytest.raises(ValueError, match="too short"):
        split_commitments(proof[:100], counts)
