"""Every reason the gate can give, in order, with real EZKL proofs and real EIP-712 signatures.

A small circuit (6 actions × 8 hidden × 4 rows at input scale 8: logrows 10, ~2 s a proof) stands for the
SmolVLA slice; the "model" is a dict holding ``action_out_proj`` and one other parameter. Approval is a plain
lookup here (the registry's ``isApproved`` is exercised on a real chain in test_verified_federation.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from eth_account import Account
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.protocol.gate import VERIFIED, VERIFIED_CHECKS, Gate, RoundContext
from aggregator.protocol.verification import LocalProofChecker
from node.contribution import SLICE_BIAS, SLICE_WEIGHT, RoundTerms, contribution_record
from node.params import pack
from prover import CircuitConfig, ProofArtifact, SliceShape, build_circuit, params_hash, prove
from prover.synthetic import synthetic_slice

SHAPE = SliceShape(actions=6, hidden=8, rows=4)
SMALL = CircuitConfig(input_scale=8, decomp_base=256, decomp_legs=6)  # losses up to 2^16/(m·A)
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
RUN, OTHER_RUN = "0x" + "a1" * 32, "0x" + "b2" * 32
KEY = "0x" + "c3" * 32  # the round's circuit on the registry (what nodes sign)
TaskIdentity.run_id, TaskIdentity.task_id = 1, 0


def model(W: np.ndarray, b: np.ndarray, other: float) -> dict[str, np.ndarray]:  # noqa: N803
    weight = np.zeros((32, SHAPE.hidden), np.float32)
    bias = np.zeros(32, np.float32)
    weight[: SHAPE.actions], bias[: SHAPE.actions] = W, b
    return {"other": np.full(3, other, np.float32), SLICE_WEIGHT: weight, SLICE_BIAS: bias}


@pytest.fixture(scope="module")
def setup(cache_dir):
    circuit = build_circuit(SHAPE, "dev", cache_dir / "gate", config=SMALL)
    honest = synthetic_slice(SHAPE, seed=3)
    flat = synthetic_slice(SHAPE, seed=4, improve=False)
    return {
        "circuit": circuit,
        "checker": LocalProofChecker(circuit),
        "slice": honest,
        "global": model(honest.W_g, honest.b_g, 0.0),
        "node": model(honest.W_n, honest.b_n, 0.1),
        "artifact": prove(circuit, honest),
        "flat": flat,
        "flat_artifact": prove(circuit, flat),
        "wallet": Account.create(),
        "stranger": Account.create(),
    }


def context(setup, round_: int = 2, approved: tuple[str, ...] | None = None) -> RoundContext:
    allowed = set(approved if approved is not None else [setup["wallet"].address])
    g = setup["global"]
    return RoundContext(round_, g, params_hash(list(g.values())), chain_id=CHAIN_ID, registry=REGISTRY, run_id=RUN,
                        circuit_key=KEY, is_approved=lambda a: a in allowed, verifier=setup["checker"])


def reply(setup, ctx: RoundContext, arrays=None, artifact=None, signer=None, address=None, round_=None,
          global_hash=None, contribution=True, node_id=11, run_id=None, circuit_key=KEY) -> Message:
    arrays = setup["node"] if arrays is None else arrays
    terms = RoundTerms(run_id or ctx.run_id, round_ or ctx.round, global_hash or ctx.global_hash,
                       setup["circuit"].circuit_id, circuit_key, CHAIN_ID, REGISTRY, SHAPE.rows,
                       setup["circuit"].srs.logrows)
    wallet = setup["wallet"]
    content = RecordDict({**pack(arrays), "metrics": MetricRecord({"num-examples": 8})})
    if contribution:
        record = contribution_record(terms, arrays, artifact or setup["artifact"], signer or wallet,
                                     address or wallet.address)
        content["contribution"] = ConfigRecord(record)
    TaskIdentity.node_id = node_id
    return Message(content, dst_node_id=0, message_type="train")


def outcome(setup, msg: Message, ctx: RoundContext):
    return Gate(list(VERIFIED_CHECKS))(msg, ctx)[1]


def test_honest_reply_is_verified(setup):
    ctx = context(setup)
    o = outcome(setup, reply(setup, ctx), ctx)
    assert o.status == VERIFIED, o.detail
    assert o.address == setup["wallet"].address
    assert o.loss_after < o.loss_before
    assert (o.loss_before, o.loss_after) == (setup["artifact"].loss_before, setup["artifact"].loss_after)


def test_malformed_without_contribution(setup):
    ctx = context(setup)
    assert outcome(setup, reply(setup, ctx, contribution=False), ctx).status == "MALFORMED"


def test_unknown_node(setup):
    ctx = context(setup, approved=())
    assert outcome(setup, reply(setup, ctx), ctx).status == "UNKNOWN_NODE"


def test_bad_signature_another_key_claiming_the_wallet(setup):
    ctx = context(setup)
    o = outcome(setup, reply(setup, ctx, signer=setup["stranger"]), ctx)
    assert o.status == "BAD_SIGNATURE" and o.address is None  # not attributable to the wallet it claims


def test_stale_round_global_hash_and_second_reply(setup):
    ctx = context(setup)
    assert outcome(setup, reply(setup, ctx, round_=1), ctx).status == "STALE"
    assert outcome(setup, reply(setup, ctx, global_hash="0x" + "ab" * 32), ctx).status == "STALE"
    other_run = outcome(setup, reply(setup, ctx, run_id=OTHER_RUN), ctx)  # same round and global, another run
    assert other_run.status == "STALE" and "another run" in other_run.detail
    other_circuit = outcome(setup, reply(setup, ctx, circuit_key="0x" + "c4" * 32), ctx)  # proved for another key
    assert other_circuit.status == "STALE" and "circuit" in other_circuit.detail
    assert outcome(setup, reply(setup, ctx), ctx).status == VERIFIED
    assert outcome(setup, reply(setup, ctx, node_id=12), ctx).status == "STALE"  # same wallet again


def test_integrity_arrays_changed_after_signing(setup):
    ctx = context(setup)
    msg = reply(setup, ctx)
    tampered = dict(setup["node"])
    tampered["other"] = tampered["other"] + 1.0
    msg.content["arrays"] = pack(tampered)["arrays"]  # what arrives is not what was signed
    assert outcome(setup, msg, ctx).status == "INTEGRITY"


def test_bad_proof_flipped_byte_and_edited_loss(setup):
    ctx = context(setup)
    art = setup["artifact"]
    proof = bytearray(art.proof)
    proof[len(proof) // 2] ^= 1
    flipped = replace(art, proof=bytes(proof))
    o = outcome(setup, reply(setup, ctx, artifact=flipped), ctx)
    assert o.status == "BAD_PROOF"
    lower = int.from_bytes(bytes.fromhex(art.instances[1]), "little") - 1
    edited = replace(art, instances=(art.instances[0], lower.to_bytes(32, "little").hex()))
    assert outcome(setup, reply(setup, context(setup), artifact=edited), context(setup)).status == "BAD_PROOF"


def test_bad_proof_signed_fields_not_the_proofs(setup):
    ctx = context(setup)
    msg = reply(setup, ctx)
    record = dict(msg.content["contribution"])
    record["loss-after"] = record["loss-after"] / 2  # claims more than it proved, re-signed honestly
    c_terms = RoundTerms(ctx.run_id, ctx.round, ctx.global_hash, setup["circuit"].circuit_id, KEY, CHAIN_ID,
                         REGISTRY, SHAPE.rows, setup["circuit"].srs.logrows)
    art = replace(ProofArtifact.from_bytes(record["proof"]), loss_after=record["loss-after"])
    msg.content["contribution"] = ConfigRecord(contribution_record(c_terms, setup["node"], art, setup["wallet"]))
    assert outcome(setup, msg, ctx).status == "BAD_PROOF"


def test_unbound_slice_sent_is_not_the_slice_proven(setup):
    ctx = context(setup)
    other = model(setup["slice"].W_n + 0.5, setup["slice"].b_n, 0.1)
    assert outcome(setup, reply(setup, ctx, arrays=other), ctx).status == "UNBOUND"


def test_unbound_global_of_another_round(setup):
    ctx = context(setup)
    ctx.global_arrays = model(setup["slice"].W_g + 0.25, setup["slice"].b_g, 0.0)  # this round's global differs
    assert outcome(setup, reply(setup, ctx), ctx).status == "UNBOUND"


def test_no_improvement(setup):
    flat = setup["flat"]
    ctx = context(setup)
    ctx.global_arrays = model(flat.W_g, flat.b_g, 0.0)
    ctx.global_hash = params_hash(list(ctx.global_arrays.values()))
    msg = reply(setup, ctx, arrays=model(flat.W_n, flat.b_n, 0.1), artifact=setup["flat_artifact"])
    assert outcome(setup, msg, ctx).status == "NO_IMPROVEMENT"


# ----------------------------------------------------------------------------- fabricated witnesses vs validation
class SliceValidation:
    """The aggregator's validation set for this module's toy model: frames (X_v, Y_v) it holds, on which the honest
    update's direction is the useful one (Y_v is made by a slice beyond W_n, from W_g). SmolVLA's own validation
    (``aggregator.protocol.validation``) runs in tests/integration/test_verified_federation.py."""

    def __init__(self, setup, global_: dict, frames: int = 64) -> None:
        s = setup["slice"]
        rng = np.random.default_rng(5)
        self.X = rng.standard_normal((frames, SHAPE.hidden)).astype(np.float32)  # noqa: N806
        W_t, b_t = s.W_g + 2 * (s.W_n - s.W_g), s.b_g + 2 * (s.b_n - s.b_g)  # noqa: N806
        self.Y = self.X @ W_t.T + b_t
        self.global_loss = self.loss(global_)

    def loss(self, arrays: dict) -> float:
        W, b = arrays[SLICE_WEIGHT][: SHAPE.actions], arrays[SLICE_BIAS][: SHAPE.actions]  # noqa: N806
        return float(np.mean((self.X @ W.T + b - self.Y) ** 2))

    def score(self, arrays: dict) -> float:
        return round(self.global_loss - self.loss(arrays), 6)


def fabricated(setup, kind: str):
    """The fabricators' replies, made by the attack library and proven with real EZKL on fabricated targets."""
    from attacks import Attack

    s, g = setup["slice"], setup["global"]
    sent = Attack(kind).sent(g, setup["node"], seed=1)
    W, b = sent[SLICE_WEIGHT][: SHAPE.actions], sent[SLICE_BIAS][: SHAPE.actions]  # noqa: N806
    slice_ = Attack(kind).witness(replace(s, W_n=W, b_n=b))
    return sent, prove(setup["circuit"], slice_)


@pytest.mark.parametrize("kind", ["fabricate-witness", "fabricate-free-rider"])
def test_fabricated_witness_passes_the_proof_checks_but_not_validation(setup, kind):
    """Before: the proof's witnesses are free, so a poisoned update (θ_g − Δ) or the global model plus noise, proven
    on made-up targets, shows a large improvement and is VERIFIED by every proof check. After: the validation
    score shows what it does on data the node did not choose: the poisoned update is HARMFUL, and the free-rider
    scores about zero (not a fault; Krum's selection then leaves it out: tests/unit/test_strategy.py)."""
    sent, artifact = fabricated(setup, kind)
    assert artifact.loss_after < 0.01 * artifact.loss_before  # "improved" by ~100 %
    ctx = context(setup)
    before = outcome(setup, reply(setup, ctx, arrays=sent, artifact=artifact), ctx)
    assert before.status == VERIFIED, before.detail
    ctx = context(setup)
    ctx.validation, ctx.harm_tolerance = SliceValidation(setup, setup["global"]), 0.01
    after = outcome(setup, reply(setup, ctx, arrays=sent, artifact=artifact), ctx)
    if kind == "fabricate-witness":
        assert after.status == "HARMFUL" and after.score < -0.01, (after.status, after.score)
    else:
        assert after.status == VERIFIED and abs(after.score) < 0.01 * ctx.validation.global_loss, after.score
    assert ctx.validation.score(setup["node"]) > 0.01  # while the honest update scores above τ


def test_small_rise_of_the_proven_loss_is_left_to_validation(setup):
    """NO_IMPROVEMENT is a noisy signal for honest nodes (one batch): a rise within ρ goes on to the validation
    score; beyond ρ it is still rejected."""
    flat, art = setup["flat"], setup["flat_artifact"]
    rise = art.loss_after / art.loss_before - 1
    assert rise > 0
    for tolerance, expected in ((rise * 2, VERIFIED), (rise / 2, "NO_IMPROVEMENT")):
        ctx = context(setup)
        ctx.global_arrays = model(flat.W_g, flat.b_g, 0.0)
        ctx.global_hash = params_hash(list(ctx.global_arrays.values()))
        ctx.rise_tolerance = tolerance
        msg = reply(setup, ctx, arrays=model(flat.W_n, flat.b_n, 0.1), artifact=art)
        assert outcome(setup, msg, ctx).status == expected
