"""The chain journal: held outcomes wait for the round's commit, a resume supersedes a killed attempt's, and a row
never silently changes what the run says about a slot."""

from __future__ import annotations

import sqlite3

import pytest

from aggregator.ledger.journal import Journal, JournalError

RUN, OTHER = "0x" + "aa" * 32, "0x" + "bb" * 32
OPEN = {"global_hash": "0x" + "11" * 32, "circuit_id": "0x" + "cc" * 32}


def record(status: int) -> dict:
    return {"node_id": 7, "status": status}


def test_held_rows_wait_for_release(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.add(RUN, "open", 1, "", OPEN)
    j.add(RUN, "record", 1, "0xa", record(1), held=True)
    j.add(RUN, "reject", 1, "0xb", record(3), held=True)
    assert [op.kind for op in j.pending(RUN)] == ["open"]
    assert j.release(RUN, 2) == 0  # another round's commit releases nothing of round 1
    assert j.release(RUN, 1) == 2
    assert [op.kind for op in j.pending(RUN)] == ["open", "record", "reject"]  # journal order kept


def test_re_journalling_the_same_operation_is_ignored_and_another_payload_refused(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    assert j.add(RUN, "open", 1, "", OPEN)
    assert not j.add(RUN, "open", 1, "", dict(OPEN))  # a restart re-journals it
    with pytest.raises(JournalError, match="another payload"):
        j.add(RUN, "open", 1, "", {**OPEN, "global_hash": "0x" + "22" * 32})
    assert j.add(OTHER, "open", 1, "", {**OPEN, "global_hash": "0x" + "22" * 32})  # another run: its own slot
    assert len(j.pending(RUN)) == 1 and len(j.pending()) == 2


def test_resume_releases_committed_rounds_and_supersedes_the_killed_attempt(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.add(RUN, "open", 1, "", OPEN)
    j.add(RUN, "record", 1, "0xa", record(1), held=True)  # round 1: summary written, killed before release
    j.add(RUN, "open", 2, "", OPEN)
    j.add(RUN, "record", 2, "0xa", record(1), held=True)  # round 2: killed before the summary held it
    j.add(OTHER, "record", 2, "0xa", record(1), held=True)  # another run's rows are not this resume's
    j.close()

    j = Journal(path)
    assert j.reconcile(RUN, committed=[1]) == {"released": 1, "superseded": 1}
    states = {(op.run_id, op.kind, op.round): op.state for op in j.all()}
    assert states[(RUN, "record", 1)] == "pending" and states[(RUN, "record", 2)] == "superseded"
    assert states[(OTHER, "record", 2)] == "held"
    # The re-run of round 2 journals fresh rows beside the superseded one, with other outcomes.
    assert j.add(RUN, "record", 2, "0xa", record(2), held=True)
    j.release(RUN, 2)
    sent = [op for op in j.pending(RUN) if op.round == 2 and op.kind == "record"]
    assert [op.payload["status"] for op in sent] == [2]
    assert j.counts(RUN) == {"held": 0, "pending": 4, "done": 0, "failed": 0, "superseded": 1}
    superseded = [op for op in j.all() if op.state == "superseded"]
    assert superseded[0].payload["status"] == 1 and "superseded" in superseded[0].last_error  # kept for the audit


def test_done_and_failed_rows_leave_pending(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    j.add(RUN, "open", 1, "", OPEN)
    j.add(RUN, "close", 1, "", {"new_global_hash": "0x" + "33" * 32})
    first, second = j.pending(RUN)
    j.mark_done(first.id, "0x01")
    j.mark_failed(second.id, "mismatch")
    assert j.pending(RUN) == []
    assert j.counts(RUN)["done"] == 1 and j.counts(RUN)["failed"] == 1
    assert [op.last_error for op in j.all()] == [None, "mismatch"]


def test_a_journal_of_another_format_is_refused_clearly(tmp_path):
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE ops (id INTEGER PRIMARY KEY, kind TEXT, round INTEGER, node TEXT, payload TEXT)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="older zk0"):
        Journal(old)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match="not a usable chain journal"):
        Journal(junk)


def test_a_rounds_signed_records_go_in_one_batch(tmp_path):
    """ChainSync sends consecutive signed records of one round together; an open, a rejection, a record with an
    on-chain proof, or another round starts a new transaction."""
    from aggregator.ledger.chain_sync import ChainSync

    j = Journal(tmp_path / "j.sqlite")
    j.add(RUN, "open", 1, "", OPEN)
    for node in ("0xa", "0xb", "0xc"):
        j.add(RUN, "record", 1, node, {**record(1), "proof": None})
    j.add(RUN, "record", 1, "0xd", {**record(1), "proof": {"proof": "0x00", "instances": []}})
    j.add(RUN, "reject", 1, "0xe", record(3))
    j.add(RUN, "record", 2, "0xa", {**record(1), "proof": None})
    ops = j.pending(RUN)
    batches, i = [], 0
    while i < len(ops):
        batch = ChainSync._batch(ops, i)
        batches.append([(op.kind, op.round, op.node) for op in batch])
        i += len(batch)
    assert batches == [[("open", 1, "")], [("record", 1, "0xa"), ("record", 1, "0xb"), ("record", 1, "0xc")],
                       [("record", 1, "0xd")], [("reject", 1, "0xe")], [("record", 2, "0xa")]]
