"""Synthetic slices of realistic scale: the default calibration data, and test and benchmark inputs.

Weights at SmolVLA's init scale (1/√H), unit-variance features, targets u_t = noise − action of variance ~2
(normalized actions). The node's trunk features X_n are the global ones slightly moved, and its slice is one
gradient step from the global one on (X_n, Y), so it improves the loss (or, with ``improve=False``, one step
uphill).
"""

from __future__ import annotations

import numpy as np

from prover.capture import Slice
from prover.statement import SliceShape


def synthetic_slice(shape: SliceShape, seed: int = 0, improve: bool = True, step: float = 0.05) -> Slice:
    rng = np.random.default_rng(seed)
    a, h, m = shape.actions, shape.hidden, shape.rows
    w_g = (rng.standard_normal((a, h)) / np.sqrt(h)).astype(np.float32)
    b_g = (0.1 * rng.standard_normal(a)).astype(np.float32)
    x_g = rng.standard_normal((m, h)).astype(np.float32)
    x_n = x_g + 0.01 * rng.standard_normal((m, h)).astype(np.float32)
    y = (1.5 * rng.standard_normal((m, a))).astype(np.float32)
    residual = x_n @ w_g.T + b_g - y
    lr = step if improve else -step
    w_n = w_g - lr * residual.T @ x_n / m / np.sqrt(h)
    b_n = b_g - lr * residual.mean(axis=0)
    return Slice(w_g, b_g, w_n, b_n, x_g, x_n, y)
