"""The statement a node proves (DESIGN.md §4), as a torch module, a numpy reference and an ONNX graph.

The slice is SmolVLA's final action projection restricted to the robot's A real action dimensions:
W ∈ R^{A×H}, b ∈ R^A. At m captured positions of the node's data (same noise, time and flow-matching targets
Y ∈ R^{m×A}) the statement compares the global model and the node's model, each on its own features — the
inputs of the layer, X_g from the global trunk and X_n from the node's trunk (both ∈ R^{m×H}):

    loss_before = mean((X_g·W_gᵀ + b_g − Y)²)      the global model's loss at those positions
    loss_after  = mean((X_n·W_nᵀ + b_n − Y)²)      the node model's loss at the same positions

(over the m rows and A action dimensions: SmolVLA's own unreduced flow-matching loss there). Why X_n and not
X_g for loss_after: the node trained its trunk too, so its W_n fits X_n; on X_g honest updates improved by only
~2-5 % and sometimes not at all (measured, docs/trust-model.md).

The ONNX graph of :class:`SliceLoss` is what EZKL turns into a circuit. Each model's slice enters as one matrix
P = [W | b] ∈ R^{A×(H+1)} (one commitment per model: the verifier recomputes two, not four) and each feature matrix
with a column of ones, X̃ = [X | 1] ∈ R^{m×(H+1)}, so that X̃·Pᵀ = X·Wᵀ + b is one matrix product: the circuit
never slices P (slicing copies its A·(H+1) cells, ~9k rows at real size, which decided whether the circuit fits
2^15 rows with two columns; docs/benchmarks.md). Its inputs are P_g, P_n, X̃_g, X̃_n, Y (named P_g, P_n, X_g, X_n,
Y in the graph), all committed; its two outputs (loss_before, loss_after) are public.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

FIELD_NAMES = ("W_g", "b_g", "W_n", "b_n", "X_g", "X_n", "Y")  # a Slice's arrays
INPUT_NAMES = ("P_g", "P_n", "X_g", "X_n", "Y")  # the circuit's inputs: P = [W | b], X_g and X_n as [X | 1]
OUTPUT_NAMES = ("loss_before", "loss_after")
ONNX_OPSET = 17


@dataclass(frozen=True)
class SliceShape:
    """Sizes of the slice: A action dimensions, H hidden width (input of the layer), m rows."""

    actions: int
    hidden: int
    rows: int

    def __post_init__(self) -> None:
        for name in ("actions", "hidden", "rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SliceShape.{name} must be a positive int, got {value!r}")

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of a slice's arrays (W_g, b_g, W_n, b_n, X_g, X_n, Y), in FIELD_NAMES order."""
        a, h, m = self.actions, self.hidden, self.rows
        return (a, h), (a,), (a, h), (a,), (m, h), (m, h), (m, a)

    def circuit_input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of the circuit's inputs (P_g, P_n, X̃_g, X̃_n, Y), in INPUT_NAMES order."""
        a, h, m = self.actions, self.hidden, self.rows
        return (a, h + 1), (a, h + 1), (m, h + 1), (m, h + 1), (m, a)

    def label(self) -> str:
        return f"A{self.actions}-H{self.hidden}-m{self.rows}"


def stack(W: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: N803
    """P = [W | b]: a model's slice as the circuit's one input (A, H+1), float32."""
    return np.concatenate([np.asarray(W, np.float32), np.asarray(b, np.float32)[:, None]], axis=1)


def with_ones(X: np.ndarray) -> np.ndarray:  # noqa: N803
    """X̃ = [X | 1]: features as the circuit's input (m, H+1), float32, so that X̃·Pᵀ = X·Wᵀ + b."""
    X = np.asarray(X, np.float32)  # noqa: N806
    return np.concatenate([X, np.ones((X.shape[0], 1), np.float32)], axis=1)


class SliceLoss(nn.Module):
    """(P_g, P_n, X̃_g, X̃_n, Y) → (loss_before, loss_after), each of shape (1,); P = [W | b], X̃ = [X | 1]."""

    def forward(self, P_g, P_n, X_g, X_n, Y):  # noqa: N803 (the names of the statement)
        loss_before = ((X_g @ P_g.T - Y) ** 2).mean()
        loss_after = ((X_n @ P_n.T - Y) ** 2).mean()
        return loss_before.reshape(1), loss_after.reshape(1)


def slice_loss(W: np.ndarray, b: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:  # noqa: N803
    """mean((X·Wᵀ + b − Y)²) in float64: the reference the circuit's outputs are checked against."""
    residual = X.astype(np.float64) @ W.astype(np.float64).T + b.astype(np.float64) - Y.astype(np.float64)
    return float(np.mean(residual**2))


def statement_losses(W_g, b_g, W_n, b_n, X_g, X_n, Y) -> tuple[float, float]:  # noqa: N803
    """(loss_before, loss_after) of the statement, in float64."""
    return slice_loss(W_g, b_g, X_g, Y), slice_loss(W_n, b_n, X_n, Y)


def export_onnx(shape: SliceShape, path: str | Path) -> Path:
    """Write the statement's ONNX graph for ``shape`` to ``path``.

    Uses the TorchScript exporter, which gives the same bytes for the same shape every time (the circuit id
    hashes these bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = tuple(torch.zeros(s, dtype=torch.float32) for s in shape.circuit_input_shapes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice
        torch.onnx.export(
            SliceLoss(),
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    log.debug("exported the %s statement to %s", shape.label(), path)
    return path
