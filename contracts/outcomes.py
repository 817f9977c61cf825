"""What happened to a node's reply in a round: the status and reason codes stored by the registry.

The numbers are the contract's constants (ContributionRegistry.sol); the names are the gate's (DESIGN §3).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    SELECTED = 1  # verified and chosen by Krum
    NOT_SELECTED = 2  # verified, not chosen (or the round had no quorum)
    REJECTED = 3  # failed a gate check (the reason says which)


class Reason(IntEnum):
    NONE = 0
    MALFORMED = 1  # records, shapes, dtypes or values not as specified
    UNKNOWN_NODE = 2  # signer not approved in the registry
    BAD_SIGNATURE = 3  # signature does not verify
    STALE = 4  # round or global hash is not this round's (a replay)
    INTEGRITY = 5  # the received arrays do not hash to the signed update hash
    BAD_PROOF = 6  # the EZKL proof does not verify
    UNBOUND = 7  # the proof's commitments are not the global / received slice
    NO_IMPROVEMENT = 8  # loss_after >= loss_before
    NO_QUORUM = 9  # too few verified replies for Krum: the round kept the global model
    HARMFUL = 10  # the validation score is below -tau: the update hurts the aggregator's validation set
    DUPLICATE = 11  # the same update or proof as another wallet's reply of the round: one piece of work, one record


# Replies rejected before a valid signature for this round exists: recorded with recordRejection.
UNSIGNED_REASONS = frozenset({Reason.MALFORMED, Reason.UNKNOWN_NODE, Reason.BAD_SIGNATURE, Reason.STALE})


def is_valid_signed_outcome(status: Status, reason: Reason) -> bool:
    """The contract's rule for recordContribution (checked there too; here to fail early and clearly)."""
    if status == Status.SELECTED:
        return reason == Reason.NONE
    if status == Status.NOT_SELECTED:
        return reason in (Reason.NONE, Reason.NO_QUORUM)
    return reason in (Reason.MALFORMED, Reason.INTEGRITY, Reason.BAD_PROOF, Reason.UNBOUND, Reason.NO_IMPROVEMENT,
                      Reason.HARMFUL, Reason.DUPLICATE)
