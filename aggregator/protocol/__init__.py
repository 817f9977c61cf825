"""The round's protocol: every reply gated (signature, round, proof, binding, usefulness), Krum over the verified
ones, the chosen averaged, and what each round opens and records on the chain.

Face: ``GatedMultiKrum`` (the strategy Flower drives), ``Gate`` and its checks, ``Validator`` (the validation
score), ``Verification`` (the circuit and chain of a verified run). Uses ``aggregator.ledger``; never the run,
tools or CLI above it.
"""

from aggregator.protocol.gate import (
    STRUCTURAL_CHECKS,
    VERIFIED,
    VERIFIED_CHECKS,
    Gate,
    Outcome,
    Rejected,
    Reply,
    RoundContext,
)
from aggregator.protocol.intake import ArrivalGrid, RoundIntake
from aggregator.protocol.strategy import GatedMultiKrum, RoundLog
from aggregator.protocol.updates import UpdateStore
from aggregator.protocol.validation import ValidationConfig, Validator
from aggregator.protocol.verification import ChainConfig, LocalProofChecker, Verification

__all__ = [
    "STRUCTURAL_CHECKS", "VERIFIED", "VERIFIED_CHECKS", "ArrivalGrid", "ChainConfig", "Gate", "GatedMultiKrum",
    "LocalProofChecker", "Outcome", "Rejected", "Reply", "RoundContext", "RoundIntake", "RoundLog", "UpdateStore",
    "ValidationConfig", "Validator", "Verification",
]
