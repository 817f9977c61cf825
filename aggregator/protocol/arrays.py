"""A reply's arrays read where they lie: views on the bytes Flower received, not copies.

Flower's ``Array.numpy()`` is ``np.load`` of the serialized bytes: a second copy of the update (400 MB for a
real-size SmolVLA reply) next to the bytes the message still holds. ``array_view`` parses the same ``.npy`` header
(numpy's own parser, no pickles) and returns a read-only view on the message's bytes, so a gate worker holds one
copy of an update. The view keeps the bytes alive: dropping the message's record frees nothing until the view goes.
"""

from __future__ import annotations

import io

import numpy as np
from flwr.app import Array, ArrayRecord
from numpy.lib import format as npy

_HEADER_MAX = 1 << 16  # bytes of the .npy header read at most (np.load's parsers refuse headers over 10,000)


def array_view(array: Array) -> np.ndarray:
    """The array in ``array``'s ``.npy`` bytes, as a read-only view on them (no copy).

    Raises ``ValueError`` for what ``np.load(allow_pickle=False)`` would refuse (another serialization, a bad
    header, an object dtype) and for bytes that are not exactly the header's shape and dtype (truncated or padded).
    """
    if array.stype != "numpy.ndarray":
        raise ValueError(f"unsupported serialization {array.stype!r} (expected numpy.ndarray)")
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


def record_views(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Every array of ``record``, by name in its order, as read-only views on its bytes (``array_view``)."""
    return {name: array_view(array) for name, array in record.items()}
