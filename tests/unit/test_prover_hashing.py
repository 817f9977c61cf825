"""The canonical hashes: deterministic, and different whenever the arrays differ in any way."""

from __future__ import annotations

import hashlib

import numpy as np

from prover.hashing import params_hash, sha256_hex


def test_sha256_hex_is_prefixed_sha256():
    assert sha256_hex(b"zk0") == "0x" + hashlib.sha256(b"zk0").hexdigest()


def test_params_hash_is_deterministic_and_copies_agree():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float32)]
    assert params_hash(arrays) == params_hash([a.copy() for a in arrays])
    assert params_hash(arrays).startswith("0x") and len(params_hash(arrays)) == 66


def test_params_hash_sees_order_dtype_shape_and_values():
    a = np.arange(6, dtype=np.float32)
    base = params_hash([a, a + 1])
    assert params_hash([a + 1, a]) != base  # order
    assert params_hash([a.astype(np.float64), a + 1]) != base  # dtype
    assert params_hash([a.reshape(2, 3), a + 1]) != base  # shape, same bytes
    changed = a.copy()
    changed[3] = np.nextafter(changed[3], np.float32(10))  # one ulp
    assert params_hash([changed, a + 1]) != base


def test_params_hash_has_unambiguous_boundaries():
    a = np.arange(6, dtype=np.float32)
    assert params_hash([a]) != params_hash([a[:3], a[3:]])
    assert params_hash([]) != params_hash([np.zeros(0, dtype=np.float32)])


def test_params_hash_is_byte_order_and_layout_independent():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert params_hash([a.astype(">f4")]) == params_hash([a])
    assert params_hash([np.asfortranarray(a)]) == params_hash([a])


def test_params_hash_takes_empty_and_zero_dimensional_arrays():
    """An array with a zero in its shape (a layer with no rows) hashes like any other, by its shape; a 0-d array too.
    The serialization of non-empty arrays is pinned: the hash of a known list is what nodes and chain already hold."""
    assert params_hash([np.zeros((0, 3), np.float32)]) != params_hash([np.zeros((3, 0), np.float32)])
    assert params_hash([np.float32(1.0)]) == params_hash([np.ones((), np.float32)])
    known = params_hash([np.arange(6, dtype=np.float32).reshape(2, 3)])
    assert known == "0x" + hashlib.sha256(
        b"".join([(1).to_bytes(8, "little"), (3).to_bytes(8, "little"), b"<f4", (2).to_bytes(8, "little"),
                  (2).to_bytes(8, "little"), (3).to_bytes(8, "little"), (24).to_bytes(8, "little"),
                  np.arange(6, dtype="<f4").tobytes()])).hexdigest()
