"""The KZG structured reference string (SRS) every party of a federation must share.

Two kinds:

- ``public``: a file from a public ceremony (e.g. EZKL's ``kzg<logrows>.srs``, from the perpetual powers of tau),
  supplied by the operator. Nobody knows its trapdoor. Use it for anything real.
- ``dev``: made here by ``ezkl.gen_srs``. Whoever made it knows the trapdoor and can forge proofs of anything.
  Tests and local demos only.

Nodes and verifiers must use byte-identical files: the SRS's sha256 is part of the circuit id.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prover.build_lock import building
from prover.errors import SRSError
from prover.ezkl_process import call as ezkl_call
from prover.hashing import file_sha256

log = logging.getLogger(__name__)

SRSKind = Literal["dev", "public"]
MIN_LOGROWS, MAX_LOGROWS = 1, 26


@dataclass(frozen=True)
class SRS:
    """An SRS file with its digest and size."""

    path: Path
    sha256: str  # "0x…" of the file's bytes
    logrows: int
    kind: SRSKind

    def __post_init__(self) -> None:
        if self.kind not in ("dev", "public"):
            raise ValueError(f"SRS kind must be 'dev' or 'public', got {self.kind!r}")
        if not MIN_LOGROWS <= self.logrows <= MAX_LOGROWS:
            raise ValueError(f"SRS logrows must be in [{MIN_LOGROWS}, {MAX_LOGROWS}], got {self.logrows}")


def srs_file_logrows(path: str | Path) -> int:
    """The logrows an SRS file declares (halo2 KZG params: k as a little-endian u32 in its first 4 bytes)."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(4)
    if len(head) < 4:
        raise SRSError(f"{path} is too short to be an SRS file: replace it with the ceremony file")
    return int.from_bytes(head, "little")


_header_logrows = srs_file_logrows  # older name, kept for callers


def load_srs(path: str | Path, logrows: int, kind: SRSKind = "public", sha256: str | None = None) -> SRS:
    """Load an operator-supplied SRS file for circuits of ``logrows`` rows.

    Raises :class:`SRSError` when the file is missing, declares another size, or (when ``sha256`` is given)
    is not the published file.
    """
    path = Path(path)
    if not path.is_file():
        raise SRSError(
            f"no SRS file at {path}: this circuit needs a KZG SRS for logrows={logrows}. Download the public "
            f"ceremony file (`ezkl get-srs --logrows {logrows} --srs-path {path}` on a machine with network), "
            f"or copy the one your federation publishes, and check its sha256."
        )
    declared = srs_file_logrows(path)
    if declared != logrows:
        raise SRSError(
            f"{path} is an SRS for logrows={declared}, the circuit needs logrows={logrows}: use the file made "
            f"for exactly {logrows} (a larger SRS makes verification hundreds of times slower)"
        )
    digest = file_sha256(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise SRSError(
            f"{path} has sha256 {digest}, the federation's SRS is {sha256}: this is not the same file, "
            f"so proofs would not verify. Fetch the published SRS again."
        )
    return SRS(path=path, sha256=digest, logrows=logrows, kind=kind)


def dev_srs(logrows: int, cache_dir: str | Path) -> SRS:
    """A development SRS for ``logrows``, made with ``ezkl.gen_srs`` once and cached in ``cache_dir``.

    Its maker knows the trapdoor and can forge proofs: never use it where proofs must mean anything.
    """
    path = Path(cache_dir) / "srs" / f"dev-k{logrows}.srs"
    with building(path, path.parent) as missing:
        if missing:
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            ezkl_call("gen_srs", str(partial), logrows)
            try:
                # Publish only if nobody did meanwhile: a second random SRS under the same name would silently
                # change every circuit id built on the first.
                os.link(partial, path)
                log.info("generated a dev SRS for logrows=%d at %s", logrows, path)
            except FileExistsError:
                pass
            finally:
                partial.unlink()
    log.warning(
        "USING A DEV SRS (%s): whoever generated it knows its trapdoor and can forge proofs of anything. "
        "Tests and local demos only; NEVER use it in production (load the public ceremony SRS with load_srs).",
        path,
    )
    return load_srs(path, logrows, kind="dev")
