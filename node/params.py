"""The parameters a node exchanges: SmolVLA's trainable set (action expert and projections), in a stable order.

The frozen VLM never travels. On the wire (``pack``/``unpack``) the trainable set is one float32 vector, Flower's
ArrayRecord ``"arrays"`` holding a single Array ``"flat"``, with its layout (every parameter's name and shape, in
order) in a ConfigRecord ``"layout"`` beside it. One Array is one Flower object plus a chunk object per 5 MiB
(``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE``), each pulled with its own request: one Array per parameter made every
transfer a hundred requests. The layout travels so that every load checks it: a model built for another
architecture is refused, not silently mis-assigned.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.common.constant import SType
from numpy.lib import format as npy

FLAT = "flat"  # the one Array of the ArrayRecord "arrays"
_HEADER_MAX = 1 << 16  # bytes of a .npy header read at most (np.load's parsers refuse headers over 10,000)


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
    with torch.no_grad():
        for name, tensor in as_tensors(arrays).items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def as_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors on the arrays' memory, for reading only. A received model is read-only views on the message's bytes
    (``unpack``); torch's warning about non-writable arrays is about writing through them, which nobody does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {name: torch.from_numpy(np.asarray(array)) for name, array in arrays.items()}


def pack(arrays: dict[str, np.ndarray], *, release: bool = False) -> dict[str, ArrayRecord | ConfigRecord]:
    """The records a message carries a model in: ``{"arrays": one float32 vector, "layout": names and shapes}``.

    The vector's ``.npy`` bytes are written array by array into one buffer that becomes the Array's bytes: one copy
    of the model, not two (a flat copy, then its serialization). ``release``: drop each array from ``arrays`` once
    written, so the model is held about once in all (the aggregator's new global model: 400 MB at real size).
    """
    names = list(arrays)
    shapes = [tuple(int(d) for d in np.shape(arrays[name])) for name in names]
    total = sum(math.prod(shape) for shape in shapes)
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (total,)})
    for name in names:
        array = np.asarray(arrays.pop(name) if release else arrays[name])
        if array.dtype != np.float32:
            raise ValueError(f"parameter {name} is {array.dtype}: the wire carries float32 only")
        buffer.write(np.ascontiguousarray(array, dtype="<f4").data)
        del array
    flat = Array(dtype="float32", shape=(total,), stype=SType.NUMPY, data=buffer.getvalue())
    layout = ConfigRecord({"names": names, "ndims": [len(s) for s in shapes], "dims": [d for s in shapes for d in s]})
    return {"arrays": ArrayRecord({FLAT: flat}), "layout": layout}


def unpack(arrays: ArrayRecord, layout: Mapping) -> OrderedDict[str, np.ndarray]:
    """The model of ``pack``'s records: name → read-only view on the received bytes, in the layout's order.

    Raises ``ValueError`` unless ``arrays`` holds exactly one float32 vector ``"flat"`` of the layout's size and the
    layout is well formed. Names and shapes are the caller's to check against what it expects (``check_arrays``).
    """
    if list(arrays) != [FLAT]:
        raise ValueError(f"the ArrayRecord must hold exactly one array {FLAT!r}, it holds {list(arrays)[:3]}")
    flat = array_view(arrays[FLAT])
    if flat.dtype != np.float32 or flat.ndim != 1:
        raise ValueError(f"{FLAT!r} is {flat.dtype} of shape {flat.shape}, expected a float32 vector")
    shapes = read_layout(layout)
    total = sum(math.prod(shape) for shape in shapes.values())
    if flat.size != total:
        raise ValueError(f"{FLAT!r} has {flat.size} values, its layout {total}")
    out, start = OrderedDict(), 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    return out


def read_layout(layout: Mapping) -> OrderedDict[str, tuple[int, ...]]:
    """``pack``'s layout record → name → shape, in order; ``ValueError`` for anything else."""
    names, ndims, dims = (layout.get(key) for key in ("names", "ndims", "dims"))
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError("layout needs 'names', a list of strings")
    for key, value in (("ndims", ndims), ("dims", dims)):
        if not (isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value)):
            raise ValueError(f"layout needs {key!r}, a list of non-negative integers")
    if len(ndims) != len(names) or sum(ndims) != len(dims) or len(set(names)) != len(names):
        raise ValueError(f"layout of {len(names)} names, {len(ndims)} ndims, {len(dims)} dims (or a name twice)")
    shapes, start = OrderedDict(), 0
    for name, ndim in zip(names, ndims, strict=True):
        shapes[name] = tuple(dims[start:start + ndim])
        start += ndim
    return shapes


def array_view(array: Array) -> np.ndarray:
    """The array in ``array``'s ``.npy`` bytes, as a read-only view on them (no copy).

    Flower's ``Array.numpy()`` is ``np.load`` of the bytes: a second copy of the model (400 MB at real size) next
    to the bytes the message still holds. This parses the same header (numpy's own parser, no pickles); the view
    keeps the bytes alive. Raises ``ValueError`` for what ``np.load(allow_pickle=False)`` would refuse (another
    serialization, a bad header, an object dtype) and for bytes that are not exactly the header's shape and dtype.
    """
    if array.stype != SType.NUMPY:
        raise ValueError(f"unsupported serialization {array.stype!r} (expected {SType.NUMPY})")
    data = array.data
    head = io.BytesIO(memoryview(data)[:_HEADER_MAX])
    version = npy.read_magic(head)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0  # np.load's parsers
    shape, fortran_order, dtype = read(head)
    if dtype.hasobject:
        raise ValueError("object arrays are not accepted")
    count = int(np.prod(shape, dtype=np.int64))
    offset = head.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{len(data) - offset} bytes of data for shape {shape} of {dtype} "
                         f"({count * dtype.itemsize} expected)")
    flat = np.frombuffer(data, dtype, count, offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")
