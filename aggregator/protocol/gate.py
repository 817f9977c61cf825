"""The verification gate: every reply is checked, in the protocol's order, before Krum may see it.

Each check is a small function that returns ``None`` (pass) or raises ``Rejected(reason, message)``; the first
failure is the reply's recorded reason (DESIGN.md §3 step 6). A reply that passes every check is *verified*.
A malformed reply never breaks the round for the others: it is parsed defensively and rejected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from eth_utils import to_checksum_address
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from aggregator.protocol.validation import RoundValidation
from contracts import Contribution, recover_signer
from node.contribution import parse_record, slice_of
from node.params import check_arrays, unpack
from prover import Verdict
from prover.hashing import params_hash, sha256_hex

log = logging.getLogger(__name__)

REASONS = ("MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE", "INTEGRITY", "BAD_PROOF", "UNBOUND",
           "NO_IMPROVEMENT", "HARMFUL", "DUPLICATE")
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
    contribution: Contribution | None = None
    claimed_address: str | None = None
    signature: bytes | None = None
    proof: bytes | None = None
    update_hash: str | None = None
    address: str | None = None  # set once the signature, round and signer check out
    loss_before: float | None = None
    loss_after: float | None = None
    proof_hash: str | None = None
    data_commitment: str | None = None
    score: float | None = None  # validation score s = L_val(θ_g) − L_val(θ_n), once measured
    verify_seconds: float | None = None  # how long the proof check took (in-process or the verifier service)
    approval_unchecked: bool = False  # the chain could not say whether the signer is approved (an outage)


@dataclass
class Outcome:
    """What happened to one reply: VERIFIED (then SELECTED/NOT_SELECTED after Krum) or a rejection reason."""

    node_id: int
    status: str
    reason: str | None = None
    detail: str = ""
    address: str | None = None  # the wallet (or, for unattributable rejections, the reply's own key on chain)
    claimed_address: str | None = None
    update_hash: str | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    train_loss: float | None = None
    proof_hash: str | None = None
    data_commitment: str | None = None
    score: float | None = None
    weight: float = 0.0  # its share of the round's new global model (SELECTED only): what its reward follows
    tx_hash: str | None = None
    prove_seconds: float | None = None  # as the node reports it
    verify_seconds: float | None = None
    proof_bytes: int | None = None
    approval_unchecked: bool = False
    dp_epsilon: float | None = None  # the privacy the node reports having spent so far (client-side DP)

    @classmethod
    def of(cls, reply: Reply, status: str, reason: str | None = None, detail: str = "") -> Outcome:
        return cls(
            node_id=reply.node_id, status=status, reason=reason, detail=detail, address=reply.address,
            claimed_address=reply.claimed_address,
            update_hash=reply.update_hash, loss_before=reply.loss_before, loss_after=reply.loss_after,
            train_loss=reply.metrics.get("train_loss"), proof_hash=reply.proof_hash,
            data_commitment=reply.data_commitment, score=reply.score,
            prove_seconds=reply.metrics.get("prove_seconds"),
            verify_seconds=reply.verify_seconds, proof_bytes=len(reply.proof) if reply.proof else None,
            approval_unchecked=reply.approval_unchecked,
            dp_epsilon=reply.metrics.get("dp_epsilon"),
        )


@dataclass
class RoundContext:
    """What the gate compares replies against: this round's number and global model, and, when contributions
    are verified, the chain identity signatures are bound to, the approved-node lookup and the proof checker."""

    round: int
    global_arrays: dict[str, np.ndarray]
    global_hash: str
    chain_id: int | None = None
    registry: str | None = None
    run_id: str | None = None  # the run on the registry (nodes sign it)
    circuit_key: str | None = None  # the round's circuit on the registry (nodes sign it: their proof's judge)
    is_approved: Callable[[str], bool | None] | None = None  # None: cannot tell now (chain unavailable)
    verifier: ProofChecker | None = None
    read_slice: Callable[[dict], tuple[np.ndarray, np.ndarray]] = slice_of  # the statement's (W, b) of a model
    signers: set[str] = field(default_factory=set)  # wallets that already passed the gate this round
    validation: RoundValidation | None = None  # the round's validation batches (None: no validation set)
    harm_tolerance: float = 0.0  # τ: a score below −τ is HARMFUL
    rise_tolerance: float = 0.0  # ρ: a proven loss that rises by more than this fraction is NO_IMPROVEMENT
    # With the nodes' drift correction (node/drift.py): what a node's correction added to its update this round,
    # by node id (None: unknown), taken out before its validation score, which then measures its own steps' work
    correction_of: Callable[[int], dict[str, np.ndarray] | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # replies are gated in parallel

    @property
    def verified(self) -> bool:
        return self.verifier is not None


class ProofChecker(Protocol):
    """In-process (``prover.verify``) or the verifier service's client: the same check either way."""

    def verify(self, artifact: bytes, W_g: np.ndarray, b_g: np.ndarray, W_n: np.ndarray,  # noqa: N803
               b_n: np.ndarray) -> Verdict: ...


Check = Callable[[Reply, RoundContext], None]


def check_well_formed(reply: Reply, ctx: RoundContext) -> None:
    """MALFORMED: the model as ``node.params.pack`` sends it (one ArrayRecord 'arrays' of one float32 vector, its
    'layout' beside it) with exactly the global model's names, shapes and finite values."""
    msg = reply.message
    if msg.has_error():
        raise Rejected("MALFORMED", f"node replied with an error: {msg.error.reason}")
    content = msg.content
    # Records looked up directly: Flower's ``content.array_records`` (and metric_/config_records) is a new dict that
    # refers to itself (a bound method), so it and the records it lists live until the cyclic GC runs: a 400 MB
    # reply would outlive its gating by an unknown time.
    if [k for k, v in content.items() if isinstance(v, ArrayRecord)] != ["arrays"]:
        raise Rejected("MALFORMED", "reply must hold exactly one ArrayRecord named 'arrays'")
    if not isinstance(content.get("layout"), ConfigRecord):
        raise Rejected("MALFORMED", "reply has no 'layout' ConfigRecord (the names and shapes of its arrays)")
    if not isinstance(content.get("metrics"), MetricRecord):
        raise Rejected("MALFORMED", "reply has no 'metrics' MetricRecord")
    try:
        arrays = unpack(content["arrays"], content["layout"])  # views on the bytes: no copy
        check_arrays(ctx.global_arrays, arrays)
    except Exception as err:  # any decoding failure of untrusted bytes is the node's fault, not ours
        raise Rejected("MALFORMED", f"bad arrays: {err}") from None
    metrics = dict(content["metrics"])
    if not isinstance(metrics.get("num-examples"), int) or metrics["num-examples"] <= 0:
        raise Rejected("MALFORMED", "metrics need a positive integer 'num-examples'")
    reply.arrays, reply.metrics = arrays, metrics
    reply.update_hash = params_hash(list(arrays.values()))
    if ctx.verified:
        if not isinstance(content.get("contribution"), ConfigRecord):
            raise Rejected("MALFORMED", "reply has no 'contribution' record (proof and signature)")
        try:
            c, address, signature, proof = parse_record(dict(content["contribution"]))
            address = to_checksum_address(address)
        except ValueError as err:
            raise Rejected("MALFORMED", str(err)) from None
        reply.contribution = c
        reply.claimed_address, reply.signature, reply.proof = address, signature, proof
        reply.loss_before, reply.loss_after = c.loss_before, c.loss_after
        reply.proof_hash, reply.data_commitment = c.proof_hash, c.data_commitment


def check_known_node(reply: Reply, ctx: RoundContext) -> None:
    """UNKNOWN_NODE: the address the reply claims is not an approved node in the registry.

    An outage is not a verdict: a wallet the aggregator cannot look up (chain down, never seen) goes on through
    the checks but is held out of the average, and its record reaches the chain when it is back, where the
    registry decides (``ChainSync``: UNKNOWN_NODE then, if it is not approved)."""
    approved = ctx.is_approved(reply.claimed_address)
    if approved is None:
        reply.approval_unchecked = True
        log.warning("round %d: cannot check the approval of %s (chain unavailable): held out of this round",
                    ctx.round, reply.claimed_address)
    elif not approved:
        raise Rejected("UNKNOWN_NODE", f"{reply.claimed_address} is not an approved node")


def check_signature(reply: Reply, ctx: RoundContext) -> None:
    """BAD_SIGNATURE: the EIP-712 signature over the signed fields is not by the claimed address."""
    try:
        signer = recover_signer(reply.contribution, reply.signature, ctx.chain_id, ctx.registry)
    except Exception as err:  # malformed signatures raise in several ways; all mean "not this node's"
        raise Rejected("BAD_SIGNATURE", f"signature does not recover: {err}") from None
    if signer != reply.claimed_address:
        raise Rejected("BAD_SIGNATURE", f"signed by {signer}, not by {reply.claimed_address}")


def check_fresh(reply: Reply, ctx: RoundContext) -> None:
    """STALE: signed for another run, round, global model or circuit (a replay), or a second reply from the same
    wallet."""
    c = reply.contribution
    if ctx.run_id is not None and c.run_id != ctx.run_id:
        raise Rejected("STALE", f"signed for run {c.run_id[:10]}…, this is run {ctx.run_id[:10]}… (a reply from "
                                "another run)")
    if ctx.circuit_key is not None and c.circuit_key != ctx.circuit_key:
        raise Rejected("STALE", f"proved for circuit {c.circuit_key[:10]}…, this round's is {ctx.circuit_key[:10]}…")
    if c.round != ctx.round or c.global_hash != ctx.global_hash:
        raise Rejected("STALE", f"signed for round {c.round} / global {c.global_hash[:10]}…, this is round "
                                f"{ctx.round} / {ctx.global_hash[:10]}…")
    with ctx.lock:  # check and claim at once: two replies of one wallet may be gated at the same time
        if reply.claimed_address in ctx.signers:
            raise Rejected("STALE", f"{reply.claimed_address} already replied in round {ctx.round}")
        ctx.signers.add(reply.claimed_address)
    reply.address = reply.claimed_address  # from here on the reply is attributable to its signer


def check_integrity(reply: Reply, ctx: RoundContext) -> None:
    """INTEGRITY: the arrays received do not hash to the update hash the node signed."""
    if reply.update_hash != reply.contribution.update_hash:
        raise Rejected("INTEGRITY", f"received arrays hash to {reply.update_hash}, signed "
                                    f"{reply.contribution.update_hash}")


def check_proof(reply: Reply, ctx: RoundContext) -> None:
    """BAD_PROOF, UNBOUND, NO_IMPROVEMENT: the proof, bound to the global and the received slice."""
    W_g, b_g = ctx.read_slice(ctx.global_arrays)  # noqa: N806 (the statement's names)
    W_n, b_n = ctx.read_slice(reply.arrays)  # noqa: N806
    t0 = time.perf_counter()
    verdict = ctx.verifier.verify(reply.proof, W_g, b_g, W_n, b_n)
    reply.verify_seconds = time.perf_counter() - t0
    if verdict.reason == "BAD_PROOF":
        raise Rejected("BAD_PROOF", verdict.message)
    c = reply.contribution
    signed = (c.proof_hash, c.data_commitment, c.loss_before, c.loss_after)
    proven = (sha256_hex(_artifact_proof(reply.proof)), verdict.data_commitment, verdict.loss_before,
              verdict.loss_after)
    if signed != proven:
        raise Rejected("BAD_PROOF", "the signed proof hash, data commitment or losses are not the proof's")
    reply.loss_before, reply.loss_after = verdict.loss_before, verdict.loss_after
    if verdict.reason == "NO_IMPROVEMENT" and verdict.loss_after <= verdict.loss_before * (1 + ctx.rise_tolerance):
        return  # one batch's proven loss is a noisy signal: a small rise is left to the validation score
    if not verdict.ok:
        raise Rejected(verdict.reason, verdict.message)


def check_useful(reply: Reply, ctx: RoundContext) -> None:
    """HARMFUL: the update raises the loss on the aggregator's validation set by more than τ (s < −τ).

    Runs on every reply that passed the other checks, so each verified reply carries its score; a score that is
    not positive is not a fault (an honest node with unusual data may score ≤ 0) but is never averaged in
    (``GatedMultiKrum._krum``). With the nodes' drift correction the score is of the node's own steps: the
    correction it added (``ctx.correction_of``, node/drift.py) is taken out first.
    """
    if ctx.validation is None:
        return
    arrays, correction = reply.arrays, ctx.correction_of(reply.node_id) if ctx.correction_of is not None else None
    if correction is not None:  # the federation's last direction (public), not this node's work: scored without it
        arrays = {name: a - correction[name] for name, a in arrays.items()}
    reply.score = ctx.validation.score(arrays)
    if reply.score < -ctx.harm_tolerance:
        raise Rejected("HARMFUL", f"validation loss rises by {-reply.score:.4f} (> τ = {ctx.harm_tolerance}) "
                                  f"from {ctx.validation.global_loss:.4f}")


def _artifact_proof(artifact: bytes) -> bytes:
    from prover import ProofArtifact

    return ProofArtifact.from_bytes(artifact).proof


STRUCTURAL_CHECKS: list[Check] = [check_well_formed, check_useful]  # a federation without proofs and signatures
VERIFIED_CHECKS: list[Check] = [check_well_formed, check_known_node, check_signature, check_fresh, check_integrity,
                                check_proof, check_useful]


@dataclass
class Gate:
    """Runs the checks in order; the first failure names the reply's reason."""

    checks: list[Check] = field(default_factory=lambda: list(VERIFIED_CHECKS))

    def __call__(self, message: Message, ctx: RoundContext, node_id: int | None = None) -> tuple[Reply, Outcome]:
        """``node_id``: the node the reply answers for, when it is not the message's sender (a SuperLink error
        reply for a node it lost)."""
        reply = Reply(node_id=message.metadata.src_node_id if node_id is None else node_id, message=message)
        for check in self.checks:
            try:
                check(reply, ctx)
            except Rejected as rej:
                log.warning("round %d: node %s rejected: %s (%s)", ctx.round, reply.node_id, rej.reason, rej)
                return reply, Outcome.of(reply, rej.reason, rej.reason, str(rej))
        return reply, Outcome.of(reply, VERIFIED)
