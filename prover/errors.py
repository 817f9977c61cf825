"""The prover's errors: each says what is wrong and what to do about it."""

from __future__ import annotations


class ProverError(RuntimeError):
    """Base of the prover's errors."""


class SRSError(ProverError):
    """The SRS file is missing, unreadable, or for another size or ceremony."""


class CircuitMismatchError(ProverError):
    """Two parties are not using the same circuit (ONNX graph, settings and SRS)."""


class CircuitFilesError(ProverError):
    """A circuit folder lacks a file, or a file in it is corrupted."""


class SliceRangeError(ProverError, ValueError):
    """The slice's values do not fit the circuit's fixed-point range."""
