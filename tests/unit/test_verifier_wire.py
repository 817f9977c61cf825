"""The verifier service's wire format: exact array round trips, and a clear error for every malformed field."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from aggregator.verifier.wire import VerdictBody, VerifyRequest, WireArray
from prover import Verdict

CIRCUIT = "0x" + "ab" * 32


def array_json(shape, data: bytes, dtype="float32") -> str:
    return json.dumps({"shape": shape, "dtype": dtype, "data": base64.b64encode(data).decode()})


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.arange(6, dtype=np.float64).reshape(3, 2).T,  # float64, not C-contiguous
        np.array([1.5, -0.0, 1e-45, 3.4e38], dtype=">f4"),  # big-endian, signed zero, subnormal, near max
        np.zeros((0, 4), np.float32),
        np.float32(2.5),  # a scalar: shape []
    ],
)
def test_arrays_round_trip_exactly(value):
    wire = WireArray.from_numpy(value)
    back = WireArray.model_validate_json(wire.model_dump_json()).array
    expected = np.asarray(value, dtype=np.float32)
    assert back.shape == expected.shape and back.dtype == np.float32
    assert back.tobytes() == np.ascontiguousarray(expected, dtype="<f4").tobytes()  # the very bits


@pytest.mark.parametrize(
    "text, words",
    [
        (array_json([2], b"\0" * 4), "data holds 4 bytes, shape [2] of float32 needs 8"),
        (array_json([1], np.array([np.nan], "<f4").tobytes()), "finite"),
        (array_json([1], np.array([-np.inf], "<f4").tobytes()), "finite"),
        (array_json([1], b"\0" * 8, dtype="float64"), "float32"),
        (array_json([-1], b""), "greater than or equal to 0"),
        (array_json([True], b"\0" * 4), "valid integer"),
        (array_json(["1"], b"\0" * 4), "valid integer"),
        (array_json([1.0], b"\0" * 4), "valid integer"),
        (array_json([1, 1, 1, 1, 1], b"\0" * 4), "at most 4 items"),
        (array_json([2**40], b""), "less than or equal to"),
        ('{"shape": [1], "dtype": "float32", "data": "AAA A"}', "not valid base64"),
        ('{"shape": [1], "dtype": "float32", "data": "AAAA\\n"}', "not valid base64"),
        ('{"shape": [1], "dtype": "float32", "data": "AAAAé"}', "not valid base64"),
        ('{"shape": [1], "dtype": "float32", "data": "AAAAAAAA"}', "needs 4"),
        ('{"shape": [1], "dtype": "float32"}', "Field required"),
        ('{"shape": [1], "dtype": "float32", "data": "AAAAAAAA", "x": 1}', "Extra inputs"),
    ],
)
def test_malformed_arrays_say_what_is_wrong(text, words):
    with pytest.raises(ValidationError, match=re.escape(words)):
        WireArray.model_validate_json(text)


def test_verify_request_round_trip_and_checks():
    rng = np.random.default_rng(0)
    w_g, b_g, w_n, b_n = (rng.standard_normal(s).astype(np.float32) for s in ((2, 8), (2,), (2, 8), (2,)))
    request = VerifyRequest.build(CIRCUIT, b"artifact bytes", w_g, b_g, w_n, b_n)
    back = VerifyRequest.model_validate(json.loads(request.model_dump_json()))
    assert back.circuit_id == CIRCUIT and back.artifact_bytes == b"artifact bytes"
    for name, value in zip(("W_g", "b_g", "W_n", "b_n"), (w_g, b_g, w_n, b_n), strict=True):
        np.testing.assert_array_equal(back.slices()[name], value)
    assert list(back.slices()) == ["W_g", "b_g", "W_n", "b_n"]  # the statement's order
    valid = json.loads(request.model_dump_json())
    with pytest.raises(ValidationError, match="artifact is not valid base64"):
        VerifyRequest.model_validate({**valid, "artifact": "!"})
    with pytest.raises(ValidationError, match="circuit_id"):
        VerifyRequest.model_validate({**valid, "circuit_id": "0xab"})
    with pytest.raises(ValidationError, match="b_n"):
        VerifyRequest.model_validate({k: v for k, v in valid.items() if k != "b_n"})


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict(
            ok=True,
            reason=None,
            message="verified",
            loss_before=0.75,
            loss_after=0.6796875,
            data_commitment="0x" + "01" * 32,
        ),  # fmt: skip
        Verdict(ok=False, reason="UNBOUND", message="W_n", loss_before=1.0, loss_after=0.5, data_commitment="0x00"),
        Verdict(ok=False, reason="BAD_PROOF", message="malformed proof artifact"),
    ],
)
def test_verdict_round_trips_to_the_same_verdict(verdict):
    wire = VerdictBody.from_verdict(verdict, seconds=0.25)
    assert VerdictBody.model_validate_json(wire.model_dump_json()).verdict() == verdict


def test_verdict_reason_is_one_of_the_protocols():
    with pytest.raises(ValidationError):
        VerdictBody(ok=False, reason="STALE", message="", loss_before=None, loss_after=None, data_commitment=None,
                    seconds=0.0)  # fmt: skip
