"""Canonical hashes: the one definition of global_hash / update_hash that node, aggregator and chain share."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def sha256_hex(data: bytes) -> str:
    """``0x``-prefixed sha256 of ``data``."""
    return "0x" + hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """``0x``-prefixed sha256 of a file's bytes, read in blocks (SRS files run to hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "0x" + digest.hexdigest()


def params_hash(arrays: Sequence[np.ndarray]) -> str:
    """sha256 over a canonical serialization of ``arrays`` in order.

    Each array contributes: its dtype string, its shape, and its little-endian C-order bytes, each with a length
    prefix, so no two different lists of arrays serialize to the same bytes.
    """
    h = hashlib.sha256()
    h.update(struct.pack("<Q", len(arrays)))
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        dtype = a.dtype.str.encode()
        h.update(struct.pack("<Q", len(dtype)) + dtype)
        h.update(struct.pack("<Q", a.ndim) + struct.pack(f"<{a.ndim}Q", *a.shape))
        h.update(struct.pack("<Q", a.nbytes))
        h.update(a.reshape(-1).view(np.uint8))  # the array's bytes as they are (a view: no copy of a 400 MB update;
        # also for an empty array, which memoryview cannot cast)
    return "0x" + h.hexdigest()
