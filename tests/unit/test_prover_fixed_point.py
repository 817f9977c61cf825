"""Fixed-point encoding: our numpy mirror agrees with EZKL's own, field elements decode back."""

from __future__ import annotations

import ezkl
import numpy as np
import pytest

from prover.fixed_point import FIELD_MODULUS, felt_to_float, felt_to_int, felts_from_ints, quantize, to_felts


def test_quantize_matches_ezkl_including_halves():
    scale = 16
    step = 2.0**-scale
    values = np.array([0.5 * step, 1.5 * step, -0.5 * step, -1.5 * step, 2.5 * step, 0.0, -3.0, 1e-9, 123.456],
                      dtype=np.float32)  # fmt: skip
    values = np.concatenate([values, np.random.default_rng(0).standard_normal(200).astype(np.float32)])
    ints = quantize(values, scale)
    assert [felt_to_int(f) for f in to_felts(values, scale)] == ints.tolist()
    assert ints[:5].tolist() == [1, 2, -1, -2, 3]  # half away from zero


def test_felts_round_trip_and_decode():
    ints = [0, 1, -1, 2**40, -(2**40)]
    felts = felts_from_ints(ints)
    assert [felt_to_int(f) for f in felts] == ints
    assert felt_to_float(ezkl.float_to_felt(-3.25, 16, ezkl.PyInputType.F32), 16) == -3.25
    with pytest.raises(ValueError, match="modulus"):
        felt_to_int(FIELD_MODULUS.to_bytes(32, "little").hex())
