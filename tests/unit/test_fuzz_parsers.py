"""Fuzzing the parsers of what untrusted nodes send: the proof artifact and the contribution record.

Whatever bytes or values a node puts in its reply, the parser must either return a well-formed value or raise
``ValueError``, and the gate must turn that into a MALFORMED rejection: any other exception would escape the gate
and end the round for every node. Bounded (about 200 examples each, no deadline) so it runs with the unit tests.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aggregator.protocol.gate import Rejected, RoundContext, check_well_formed
from node.contribution import parse_record
from node.params import pack
from prover import ProofArtifact
from prover.hashing import params_hash, sha256_hex

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TaskIdentity.run_id = 1  # a Message built outside a Flower runtime needs these
TaskIdentity.node_id = 7
TaskIdentity.task_id = 0

HEX32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
FELT = st.binary(min_size=32, max_size=32).map(bytes.hex)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=12)


@st.composite
def artifacts(draw) -> ProofArtifact:
    proof = draw(st.binary(min_size=1, max_size=256))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    return ProofArtifact(circuit_id=draw(HEX32), proof=proof, instances=tuple(draw(st.lists(FELT, max_size=3))),
                         loss_before=draw(finite), loss_after=draw(finite), data_commitment=draw(HEX32),
                         proof_hash=sha256_hex(proof))


def parse_artifact(data: bytes) -> ProofArtifact | None:
    """The contract under test: a ProofArtifact, or ValueError (returned as None), nothing else."""
    try:
        artifact = ProofArtifact.from_bytes(data)
    except ValueError:
        return None
    assert isinstance(artifact.proof, bytes) and artifact.proof_hash == sha256_hex(artifact.proof)
    assert math.isfinite(artifact.loss_before) and math.isfinite(artifact.loss_after)
    return artifact


@FUZZ
@given(data=st.binary(max_size=512))
@example(data=b"[" * 5000)  # nesting deeper than the JSON decoder's recursion limit
@example(data=b'{"format": "zk0-proof/1"' + b"}" * 3)
def test_artifact_from_arbitrary_bytes(data):
    parse_artifact(data)


@FUZZ
@given(artifact=artifacts())
def test_artifact_round_trip(artifact):
    assert ProofArtifact.from_bytes(artifact.to_bytes()) == artifact


@FUZZ
@given(artifact=artifacts(), key=st.sampled_from(["format", "circuit_id", "proof", "instances", "loss_before",
                                                  "loss_after", "data_commitment", "proof_hash", "extra"]),
       value=JSON | st.integers(min_value=10**18, max_value=10**400))
@example(artifact=None, key="loss_before", value=10**400)  # a JSON integer no float holds
@example(artifact=None, key="loss_after", value=10**30)
def test_artifact_with_one_field_replaced(artifact, key, value):
    """A valid artifact with one field set to any JSON value (or a huge integer): parsed or ValueError."""
    artifact = artifact or ProofArtifact("0x" + "11" * 32, b"p", (), 1.0, 0.5, "0x" + "22" * 32, sha256_hex(b"p"))
    obj = json.loads(artifact.to_bytes())
    obj[key] = value
    parsed = parse_artifact(json.dumps(obj).encode())
    if parsed is not None and key in ("loss_before", "loss_after"):
        assert getattr(parsed, key) == float(value)


@pytest.mark.parametrize("key", ["circuit_id", "data_commitment"])
def test_artifact_hashes_are_canonical(key):
    """'0x' + 64 lowercase hex digits and nothing after them (a regex ``$`` would let a newline through)."""
    obj = json.loads(ProofArtifact("0x" + "11" * 32, b"p", (), 1.0, 0.5, "0x" + "22" * 32, sha256_hex(b"p")).to_bytes())
    obj[key] += "\n"
    assert parse_artifact(json.dumps(obj).encode()) is None


# --------------------------------------------------------------------------------------------- contribution record
RECORD_KEYS = ("round", "global-hash", "update-hash", "proof-hash", "data-commitment", "loss-before", "loss-after",
               "address", "signature", "proof")
# What a Flower ConfigRecord can carry: int, float, str, bytes, bool, and lists of one of them.
SCALAR = (st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | st.text(max_size=40)
          | st.binary(max_size=40) | st.booleans())
CONFIG_VALUE = SCALAR | st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3) | st.lists(
    st.text(max_size=5), max_size=3) | st.lists(st.floats(), max_size=3)


def valid_record() -> dict:
    return {"round": 1, "global-hash": "0x" + "aa" * 32, "update-hash": "0x" + "bb" * 32,
            "proof-hash": "0x" + "cc" * 32, "data-commitment": "0x" + "dd" * 32, "loss-before": 1.0,
            "loss-after": 0.5, "address": "0x" + "ee" * 20, "signature": b"\x01" * 65, "proof": b"{}"}


def parse_or_value_error(record: dict) -> None:
    try:
        c, address, signature, proof = parse_record(record)
    except ValueError:
        return
    assert isinstance(c.round, int) and isinstance(address, str)
    assert isinstance(signature, bytes) and isinstance(proof, bytes)


@FUZZ
@given(record=st.dictionaries(st.sampled_from(RECORD_KEYS) | st.text(max_size=8), CONFIG_VALUE, max_size=12))
def test_record_of_arbitrary_values(record):
    parse_or_value_error(record)


@FUZZ
@given(drop=st.sets(st.sampled_from(RECORD_KEYS), max_size=2),
       changes=st.dictionaries(st.sampled_from(RECORD_KEYS), CONFIG_VALUE, max_size=3))
@example(drop=set(), changes={"round": math.inf})  # int(inf) raises OverflowError, not ValueError
@example(drop=set(), changes={"round": -math.inf})
def test_record_with_fields_dropped_or_changed(drop, changes):
    record = {k: v for k, v in {**valid_record(), **changes}.items() if k not in drop}
    parse_or_value_error(record)


# ---------------------------------------------------------------------------------- the gate's first check, whole
GLOBAL = OrderedDict(w=np.zeros((2, 3), np.float32))


class NoProofs:
    """The gate only asks whether a verifier exists before the first check; it is never called here."""

    def verify(self, *args):
        raise AssertionError("check_well_formed must not verify proofs")


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(RECORD_KEYS) | st.text(max_size=8), CONFIG_VALUE, max_size=4),
       drop=st.sets(st.sampled_from(RECORD_KEYS), max_size=1))
@example(changes={"round": math.inf}, drop=set())
@example(changes={"address": "0x" + "zz" * 20}, drop=set())
def test_gate_rejects_any_record_cleanly(changes, drop):
    """A reply with a fuzzed contribution record is accepted by the first check or rejected as MALFORMED."""
    record = {k: v for k, v in {**valid_record(), **changes}.items() if k not in drop}
    content = RecordDict({**pack(GLOBAL), "metrics": MetricRecord({"num-examples": 8}),
                          "contribution": ConfigRecord(record)})
    ctx = RoundContext(1, dict(GLOBAL), params_hash(list(GLOBAL.values())), verifier=NoProofs())
    from aggregator.protocol.gate import Reply

    reply = Reply(node_id=7, message=Message(content, dst_node_id=0, message_type="train"))
    try:
        check_well_formed(reply, ctx)
    except Rejected as rej:
        assert rej.reason == "MALFORMED"
        return
    assert reply.contribution is not None and reply.claimed_address.startswith("0x")


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(("names", "ndims", "dims")) | st.text(max_size=8), CONFIG_VALUE,
                               max_size=3),
       drop=st.sets(st.sampled_from(("names", "ndims", "dims")), max_size=1))
@example(changes={"ndims": [0]}, drop=set())  # a scalar of one value where the vector holds six
@example(changes={"ndims": [2], "dims": [0, 2**63 - 1]}, drop=set())
def test_gate_rejects_any_layout_cleanly(changes, drop):
    """A reply with a fuzzed layout (the names and shapes of its vector) passes as the global model's or is
    MALFORMED."""
    records = pack(GLOBAL)
    layout = {k: v for k, v in {**dict(records["layout"]), **changes}.items() if k not in drop}
    content = RecordDict({"arrays": records["arrays"], "layout": ConfigRecord(layout),
                          "metrics": MetricRecord({"num-examples": 8})})
    from aggregator.protocol.gate import Reply

    reply = Reply(node_id=7, message=Message(content, dst_node_id=0, message_type="train"))
    try:
        check_well_formed(reply, RoundContext(1, dict(GLOBAL), params_hash(list(GLOBAL.values()))))
    except Rejected as rej:
        assert rej.reason == "MALFORMED"
        return
    assert list(reply.arrays) == ["w"] and reply.arrays["w"].shape == (2, 3)
