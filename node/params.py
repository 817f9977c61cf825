"""The parameters a node exchanges: SmolVLA's trainable set (action expert and projections), in a stable order.

The frozen VLM never travels. Names travel with the arrays (Flower's ArrayRecord keeps them), and every load
checks them, so a reply built for another architecture is refused instead of silently mis-assigned.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import torch
from flwr.app import Array, ArrayRecord


def trainable_names(policy: torch.nn.Module) -> list[str]:
    """Names of the parameters that train, in ``named_parameters`` order (stable for one architecture)."""
    return [name for name, p in policy.named_parameters() if p.requires_grad]


def get_trainable(policy: torch.nn.Module) -> OrderedDict[str, np.ndarray]:
    """A copy of the trainable parameters as float32 numpy arrays."""
    return OrderedDict(
        (name, p.detach().cpu().numpy().astype(np.float32, copy=True))
        for name, p in policy.named_parameters() if p.requires_grad
    )


def check_arrays(expected: OrderedDict[str, np.ndarray] | dict[str, tuple], arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``arrays`` has exactly the expected names, order, shapes, float32, finite."""
    exp_names, got_names = list(expected), list(arrays)
    if exp_names != got_names:
        missing = [n for n in exp_names if n not in arrays][:3]
        extra = [n for n in got_names if n not in expected][:3]
        raise ValueError(f"parameter names differ (missing {missing}, unexpected {extra}, or order changed)")
    for name, arr in arrays.items():
        exp = expected[name]
        shape = tuple(exp.shape) if hasattr(exp, "shape") else tuple(exp)
        if tuple(arr.shape) != shape:
            raise ValueError(f"parameter {name} has shape {tuple(arr.shape)}, expected {shape}")
        if arr.dtype != np.float32:
            raise ValueError(f"parameter {name} is {arr.dtype}, expected float32")
        if not _all_finite(arr):
            raise ValueError(f"parameter {name} has NaN or Inf values")


def _all_finite(array: np.ndarray, chunk: int = 1 << 22) -> bool:
    """No NaN or Inf, checked a chunk at a time: ``np.isfinite`` of a whole 400 MB update would make 100 MB more."""
    flat = np.ravel(array, order="K")
    return all(np.isfinite(flat[i:i + chunk]).all() for i in range(0, flat.size, chunk))


def set_trainable(policy: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load ``arrays`` into the policy's trainable parameters after checking names and shapes."""
    params = OrderedDict((n, p) for n, p in policy.named_parameters() if p.requires_grad)
    check_arrays(OrderedDict((n, tuple(p.shape)) for n, p in params.items()), arrays)
    with torch.no_grad(), warnings.catch_warnings():
        # The aggregator's arrays are read-only views on the received bytes (aggregator/protocol/arrays.py); copy_
        # only reads them, so torch's warning about tensors over non-writable arrays does not apply.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, p in params.items():
            p.copy_(torch.from_numpy(np.asarray(arrays[name])).to(p.device, p.dtype))


def arrays_to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Flower ArrayRecord → ordered name → float32 array."""
    return {name: arr.numpy() for name, arr in record.items()}


def numpy_to_arrays(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()})
