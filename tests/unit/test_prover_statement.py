"""The statement: torch module, numpy reference and ONNX graph agree; shapes are validated."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import prover.circuit
from prover.capture import Slice
from prover.circuit import CircuitConfig, shape_of, spec_key
from prover.statement import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    SliceLoss,
    SliceShape,
    export_onnx,
    stack,
    statement_losses,
    with_ones,
)


def random_inputs(shape: SliceShape, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shape.input_shapes()]


def test_shape_validation():
    with pytest.raises(ValueError, match="actions"):
        SliceShape(0, 48, 16)
    with pytest.raises(ValueError, match="rows"):
        SliceShape(6, 48, 2.5)
    assert SliceShape(6, 48, 16).input_shapes() == ((6, 48), (6,), (6, 48), (6,), (16, 48), (16, 48), (16, 6))
    assert SliceShape(6, 48, 16).circuit_input_shapes() == ((6, 49), (6, 49), (16, 49), (16, 49), (16, 6))


def test_torch_module_matches_numpy_reference():
    shape = SliceShape(6, 48, 16)
    arrays = random_inputs(shape)
    inputs = Slice(*arrays).inputs()
    np.testing.assert_array_equal(inputs[0], stack(arrays[0], arrays[1]))
    np.testing.assert_array_equal(inputs[2], with_ones(arrays[4]))  # X̃_g = [X_g | 1]
    assert np.all(inputs[3][:, -1] == 1) and inputs[3].shape == (16, 49)
    before, after = SliceLoss()(*(torch.from_numpy(a) for a in inputs))
    ref_before, ref_after = statement_losses(*arrays)
    assert before.shape == (1,) and after.shape == (1,)
    assert before.item() == pytest.approx(ref_before, rel=1e-5)
    assert after.item() == pytest.approx(ref_after, rel=1e-5)
    w_g, b_g, w_n, b_n, x_g, x_n, y = arrays
    assert ref_before == pytest.approx(float(np.mean((x_g @ w_g.T + b_g - y) ** 2)), rel=1e-5)
    assert ref_after == pytest.approx(float(np.mean((x_n @ w_n.T + b_n - y) ** 2)), rel=1e-5)


def test_onnx_export_is_deterministic_and_named(tmp_path):
    shape = SliceShape(6, 48, 16)
    first = export_onnx(shape, tmp_path / "a.onnx").read_bytes()
    assert export_onnx(shape, tmp_path / "b.onnx").read_bytes() == first
    graph = onnx.load(str(tmp_path / "a.onnx")).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    dims = [tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in graph.input]
    assert dims == list(shape.circuit_input_shapes())
    assert shape_of(tmp_path / "a.onnx") == shape


def test_slice_validates_shapes_and_values():
    shape = SliceShape(6, 48, 16)
    arrays = random_inputs(shape)
    s = Slice(*arrays)
    assert s.shape == shape and all(a.dtype == np.float32 for a in s.arrays())
    assert s.losses() == pytest.approx(statement_losses(*arrays))
    bad = list(arrays)
    bad[6] = bad[6][:, :5]
    with pytest.raises(ValueError, match="inconsistent"):
        Slice(*bad)
    bad = list(arrays)
    bad[4] = bad[4].copy()
    bad[4][0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Slice(*bad)


class _OldStatement(torch.nn.Module):
    """The statement before issue 16 (P sliced into W and b): another graph for the same shape."""

    def forward(self, P_g, P_n, X_g, X_n, Y):  # noqa: N803
        h = X_g.shape[1] - 1
        return (((X_g[:, :h] @ P_g[:, :h].T + P_g[:, h] - Y) ** 2).mean().reshape(1),
                ((X_n[:, :h] @ P_n[:, :h].T + P_n[:, h] - Y) ** 2).mean().reshape(1))  # fmt: skip


def test_cached_settings_are_keyed_by_the_statement_graph(monkeypatch):
    """build_circuit reuses cached settings by this key: another statement graph (same shape, config and
    calibration data) or another config must never find the old settings. The patch of ``export_onnx`` is the one
    stand-in here: the older statement no longer exists in the code, so only a patch can export it as a cache
    written by an earlier version would have; nothing is proved or verified with it."""
    shape = SliceShape(6, 48, 16)
    inputs = list(Slice(*random_inputs(shape)).inputs())
    key = spec_key(shape, CircuitConfig(), inputs)
    assert spec_key(shape, CircuitConfig(), inputs) == key
    assert spec_key(shape, CircuitConfig(input_scale=11), inputs) != key
    monkeypatch.setattr(prover.circuit, "export_onnx", lambda s, path: _export(_OldStatement(), s, path))
    assert spec_key(shape, CircuitConfig(), inputs) != key


def _export(module, shape, path):
    import warnings

    example = tuple(torch.zeros(s, dtype=torch.float32) for s in shape.circuit_input_shapes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          opset_version=17, dynamo=False)  # fmt: skip
    return path
