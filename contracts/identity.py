"""Is the contract at an address the zk0 registry? Its runtime code against the compiled artifact's.

A wrong ``--registry`` (a token, another deployment tool's contract) would otherwise answer some calls and revert
or return zeros on others: ``approve`` would print "approved" and ``contributions`` an empty list. solc leaves each
``immutable`` as a 32-byte zero word in the artifact's runtime code and the constructor fills it at deployment, so
the code must equal the artifact's byte for byte outside those words.
"""

from __future__ import annotations

from contracts.artifacts import Artifact

WORD = 32


def _immutable_slots(code: bytes) -> bytearray:
    """1 where ``code`` has a run of at least 32 zero bytes (where solc leaves immutables), else 0."""
    mask, run = bytearray(len(code)), 0
    for i, byte in enumerate(code):
        run = run + 1 if byte == 0 else 0
        if run >= WORD:
            mask[i - WORD + 1:i + 1] = b"\x01" * WORD
    return mask


def matches_artifact(onchain: bytes, artifact: Artifact) -> bool:
    """Whether ``onchain`` runtime code is ``artifact``'s, immutables aside."""
    compiled = bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x"))
    if len(onchain) != len(compiled):
        return False
    differ = [i for i, (a, b) in enumerate(zip(onchain, compiled, strict=True)) if a != b]
    if not differ:
        return True
    mask = _immutable_slots(compiled)
    return all(mask[i] for i in differ)
