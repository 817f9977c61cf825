"""Adversarial nodes for tests, ``zk0agg demo --adversary`` and ``scripts/eval_attacks.py``.

Never loaded by the production node: the honest round (``node.client_app.train_round``) has no attack code; an
attacking node is a ClientApp built from the honest node's steps with one replaced (``attacks.round``).
"""

from attacks.library import (
    ALIE_Z,
    ATTACKS,
    COLLUDE_SIGMA,
    COPIERS,
    CRASH_ROUND,
    FABRICATE,
    FREE_RIDER_SIGMA,
    FREE_RIDERS,
    IPM_EPSILON,
    POISON,
    Attack,
    NodeCrashed,
    PoisonedDataset,
)
from attacks.round import attack_round, attack_train_fn

__all__ = [
    "ALIE_Z", "ATTACKS", "COLLUDE_SIGMA", "COPIERS", "CRASH_ROUND", "FABRICATE", "FREE_RIDER_SIGMA", "FREE_RIDERS",
    "IPM_EPSILON", "POISON", "Attack", "NodeCrashed", "PoisonedDataset", "attack_round", "attack_train_fn",
]
