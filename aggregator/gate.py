"""The verification gate: every reply is checked, in the protocol's order, before Krum may see it.

Each check is a small function that returns ``None`` (pass) or raises ``Rejected(reason, message)``; the first
failure is the reply's recorded reason (DESIGN.md §3 step 6). A reply that passes every check is *verified*.
A malformed reply never breaks the round for the others: it is parsed defensively and rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Message

from node.params import check_arrays
from prover.hashing import params_hash

log = logging.getLogger(__name__)

REASONS = ("MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE", "INTEGRITY", "BAD_PROOF", "UNBOUND",
           "NO_IMPROVEMENT")
VERIFIED = "VERIFIED"


class Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass
class Reply:
    """One node's train reply as the gate reads it, filled in as the checks go."""

    node_id: int
    message: Message
    arrays: dict[str, np.ndarray] | None = None
    metrics: dict = field(default_factory=dict)
    contribution: dict | None = None
    update_hash: str | None = None
    address: str | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    proof_hash: str | None = None
    data_commitment: str | None = None


@dataclass
class Outcome:
    """What happened to one reply: VERIFIED (then SELECTED/NOT_SELECTED after Krum) or a rejection reason."""

    node_id: int
    status: str
    reason: str | None = None
    detail: str = ""
    address: str | None = None
    update_hash: str | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    train_loss: float | None = None
    proof_hash: str | None = None
    data_commitment: str | None = None
    tx_hash: str | None = None

    @classmethod
    def of(cls, reply: Reply, status: str, reason: str | None = None, detail: str = "") -> Outcome:
        return cls(
            node_id=reply.node_id, status=status, reason=reason, detail=detail, address=reply.address,
            update_hash=reply.update_hash, loss_before=reply.loss_before, loss_after=reply.loss_after,
            train_loss=reply.metrics.get("train_loss"), proof_hash=reply.proof_hash,
            data_commitment=reply.data_commitment,
        )


@dataclass
class RoundContext:
    """What the gate compares replies against: this round's number and global model."""

    round: int
    global_arrays: dict[str, np.ndarray]
    global_hash: str


Check = Callable[[Reply, RoundContext], None]


def check_well_formed(reply: Reply, ctx: RoundContext) -> None:
    """MALFORMED: one ArrayRecord with exactly the global model's names, shapes, float32 and finite values."""
    msg = reply.message
    if msg.has_error():
        raise Rejected("MALFORMED", f"node replied with an error: {msg.error.reason}")
    content = msg.content
    if len(content.array_records) != 1 or "arrays" not in content.array_records:
        raise Rejected("MALFORMED", "reply must hold exactly one ArrayRecord named 'arrays'")
    if "metrics" not in content.metric_records:
        raise Rejected("MALFORMED", "reply has no 'metrics' MetricRecord")
    try:
        arrays = {name: arr.numpy() for name, arr in content["arrays"].items()}
        check_arrays(ctx.global_arrays, arrays)
    except Exception as err:  # any decoding failure of untrusted bytes is the node's fault, not ours
        raise Rejected("MALFORMED", f"bad arrays: {err}") from None
    metrics = dict(content["metrics"])
    if not isinstance(metrics.get("num-examples"), int) or metrics["num-examples"] <= 0:
        raise Rejected("MALFORMED", "metrics need a positive integer 'num-examples'")
    reply.arrays, reply.metrics = arrays, metrics
    reply.update_hash = params_hash(list(arrays.values()))
    if "contribution" in content.config_records:
        reply.contribution = dict(content["contribution"])


@dataclass
class Gate:
    """Runs the checks in order; the first failure names the reply's reason."""

    checks: list[Check] = field(default_factory=lambda: [check_well_formed])

    def __call__(self, message: Message, ctx: RoundContext) -> tuple[Reply, Outcome]:
        reply = Reply(node_id=message.metadata.src_node_id, message=message)
        for check in self.checks:
            try:
                check(reply, ctx)
            except Rejected as rej:
                log.warning("round %d: node %s rejected: %s (%s)", ctx.round, reply.node_id, rej.reason, rej)
                return reply, Outcome.of(reply, rej.reason, rej.reason, str(rej))
        return reply, Outcome.of(reply, VERIFIED)
