"""EIP-712 contribution signing: one definition, round trips, and the contract's signature rules."""

from __future__ import annotations

import math

import pytest
from eth_account import Account

from contracts.outcomes import Reason, Status, is_valid_signed_outcome
from contracts.typed_data import (
    Contribution,
    from_fixed,
    recover_signer,
    score_to_fixed,
    sign_contribution,
    to_fixed,
)

KEY = "0x" + "42" * 32
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order


def contribution(**changes) -> Contribution:
    fields = dict(
        run_id="0x" + "aa" * 32, round=3, global_hash="0x" + "11" * 32, update_hash="0x" + "22" * 32,
        proof_hash="0x" + "33" * 32, data_commitment="0x" + "44" * 32, loss_before=0.5, loss_after=0.25,
        circuit_key="0x" + "cc" * 32,
    )  # fmt: skip
    return Contribution(**{**fields, **changes})


def test_sign_then_recover_gives_the_signer():
    signature = sign_contribution(KEY, contribution(), 31337, REGISTRY)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert recover_signer(contribution(), signature, 31337, REGISTRY) == Account.from_key(KEY).address


@pytest.mark.parametrize(
    "other",
    [
        dict(contribution=contribution(round=4)),
        dict(contribution=contribution(run_id="0x" + "ab" * 32)),
        dict(contribution=contribution(loss_after=0.2500001)),
        dict(chain_id=1),
        dict(registry="0x" + "ab" * 20),
    ],
    ids=["round", "run", "loss", "chain-id", "registry"],
)
def test_a_signature_binds_every_field_and_the_domain(other):
    signature = sign_contribution(KEY, contribution(), 31337, REGISTRY)
    signed_for = other.get("contribution", contribution())
    recovered = recover_signer(signed_for, signature, other.get("chain_id", 31337), other.get("registry", REGISTRY))
    assert recovered != Account.from_key(KEY).address


def test_recover_rejects_malleable_and_malformed_signatures():
    signature = sign_contribution(KEY, contribution(), 31337, REGISTRY)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    twin = r + (N - s).to_bytes(32, "big") + bytes([55 - v])  # the same signature with high s (EIP-2)
    with pytest.raises(ValueError, match="malformed"):
        recover_signer(contribution(), twin, 31337, REGISTRY)
    with pytest.raises(ValueError, match="65 bytes"):
        recover_signer(contribution(), signature[:64], 31337, REGISTRY)


def test_fixed_point_losses():
    assert to_fixed(0.1) == 100_000_000
    assert to_fixed(0.0) == 0
    assert to_fixed(1.2345678905) == 1_234_567_890  # half to even at 1e-9
    assert from_fixed(to_fixed(0.123456789)) == 0.123456789
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            to_fixed(bad)


def test_fixed_point_scores_may_be_negative():
    assert score_to_fixed(0.0) == 0
    assert score_to_fixed(-0.015) == -15_000_000
    assert score_to_fixed(0.123456789) == 123_456_789
    assert from_fixed(score_to_fixed(-2.5e-9)) == -2e-9  # half to even at 1e-9, sign kept
    for bad in (math.nan, -math.inf, "0.1", True):
        with pytest.raises(ValueError, match="score"):
            score_to_fixed(bad)


def test_contribution_validates_and_normalizes():
    c = contribution(global_hash="0x" + "AB" * 32)
    assert c.global_hash == "0x" + "ab" * 32
    assert Contribution.from_dict(c.to_dict()) == c
    assert contribution(update_hash=bytes(range(32))).update_hash == "0x" + bytes(range(32)).hex()
    with pytest.raises(ValueError, match="update_hash"):
        contribution(update_hash="0x1234")
    with pytest.raises(ValueError, match="round"):
        contribution(round=-1)
    with pytest.raises(ValueError, match="run_id"):
        contribution(run_id="run-1")
    with pytest.raises(ValueError, match="loss"):
        contribution(loss_before=math.nan)


def test_signed_outcome_rules():
    assert is_valid_signed_outcome(Status.SELECTED, Reason.NONE)
    assert is_valid_signed_outcome(Status.NOT_SELECTED, Reason.NO_QUORUM)
    assert is_valid_signed_outcome(Status.REJECTED, Reason.NO_IMPROVEMENT)
    assert is_valid_signed_outcome(Status.REJECTED, Reason.HARMFUL)
    assert not is_valid_signed_outcome(Status.SELECTED, Reason.BAD_PROOF)
    assert not is_valid_signed_outcome(Status.REJECTED, Reason.STALE)  # recordRejection's
