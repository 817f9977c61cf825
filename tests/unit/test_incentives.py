"""Slashing evidence files and amounts on the command line: what zk0agg slash and zk0node stake read."""

from __future__ import annotations

import json

import pytest

from aggregator.ledger.incentives import evidence_files, read_evidence
from aggregator.protocol.verification import evidence_record
from contracts import Contribution, parse_amount
from node.errors import UserError

CONTRIBUTION = Contribution("0x" + "aa" * 32, 3, "0x" + "11" * 32, "0x" + "22" * 32, "0x" + "33" * 32,
                            "0x" + "44" * 32, 0.125, 0.0625, "0x" + "cc" * 32)  # fmt: skip


def test_slash_evidence_round_trip(tmp_path):
    record = evidence_record(31337, "0x" + "ab" * 20, "0x" + "cd" * 20, CONTRIBUTION, b"\x01" * 65, b"\x02" * 96)
    for r in (2, 10):
        path = tmp_path / f"round_{r}" / "0xabc.json"
        path.parent.mkdir()
        path.write_text(json.dumps(record))
    files = evidence_files(tmp_path)
    assert [f.parent.name for f in files] == ["round_2", "round_10"]  # rounds in numeric order
    evidence = read_evidence(files[0])
    assert (evidence.contribution, evidence.signature, evidence.proof) == (CONTRIBUTION, b"\x01" * 65, b"\x02" * 96)
    assert (evidence.chain_id, evidence.registry) == (31337, "0x" + "ab" * 20)


@pytest.mark.parametrize("text, words", [(None, "cannot read"), ("not json", "is not JSON"),
                                         ('{"kind": "other"}', "not slashing evidence"),
                                         ('{"kind": "zk0-bad-proof-evidence"}', "damaged evidence")])
def test_slash_evidence_errors_say_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "e.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=words):
        read_evidence(path)


def test_stake_amounts():
    assert parse_amount("1.5") == 15 * 10**17 and parse_amount("7wei") == 7 and parse_amount("0") == 0
    for bad in ("", "x", "-1", "1e-19", "inf", "1.5wei"):
        with pytest.raises(ValueError):
            parse_amount(bad)
