"""The EIP-712 message a node signs for its contribution: one definition for nodes, aggregator, contract tests.

It must match `Contribution` and the domain in contracts/src/ContributionRegistry.sol field for field.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

LOSS_SCALE = 10**9  # ContributionRegistry.LOSS_SCALE: losses travel as round(loss * 1e9)
DOMAIN_NAME = "zk0 ContributionRegistry"
DOMAIN_VERSION = "1"

CONTRIBUTION_TYPES: dict[str, list[dict[str, str]]] = {
    "Contribution": [
        {"name": "runId", "type": "bytes32"},
        {"name": "round", "type": "uint64"},
        {"name": "globalHash", "type": "bytes32"},
        {"name": "circuitId", "type": "bytes32"},
        {"name": "updateHash", "type": "bytes32"},
        {"name": "proofHash", "type": "bytes32"},
        {"name": "dataCommitment", "type": "bytes32"},
        {"name": "lossBefore", "type": "uint256"},
        {"name": "lossAfter", "type": "uint256"},
    ]
}

_HASH32 = re.compile(r"^0x[0-9a-f]{64}$")
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # secp256k1n / 2 (EIP-2)


def to_fixed(loss: float) -> int:
    """A non-negative finite loss as the contract's fixed-point integer (round half to even at 1e-9)."""
    if not math.isfinite(loss) or loss < 0:
        raise ValueError(f"a loss must be finite and >= 0, got {loss!r}")
    return int((Decimal(repr(float(loss))) * LOSS_SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_fixed(value: int) -> float:
    return value / LOSS_SCALE


def weight_to_fixed(weight: float) -> int:
    """A reply's weight in its round's average, 0 to 1, in the contract's fixed point (WEIGHT_SCALE = LOSS_SCALE)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"a weight must be between 0 and 1, got {weight!r}")
    return score_to_fixed(weight)


def score_to_fixed(score: float) -> int:
    """A finite validation score (may be negative) in the contract's fixed point (LOSS_SCALE, half to even)."""
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(f"a score must be a finite number, got {score!r}")
    return int((Decimal(repr(float(score))) * LOSS_SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


def _hash32(name: str, value: str | bytes) -> str:
    text = "0x" + value.hex() if isinstance(value, bytes) else str(value).lower()
    if not _HASH32.match(text):
        raise ValueError(f"{name} must be 32 bytes as 0x-hex (66 characters), got {value!r}")
    return text


@dataclass(frozen=True)
class Contribution:
    """The fields a node signs for round `round` of run `run_id`; hashes and the run id are 0x-hex 32-byte
    strings, losses are floats. The run id makes a reply signed in one run worthless in any other."""

    run_id: str
    round: int
    global_hash: str
    update_hash: str
    proof_hash: str
    data_commitment: str
    loss_before: float
    loss_after: float
    circuit_key: str  # the registry's id of the circuit proved for (circuitIdOf its key): judged by it alone

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or not 0 <= self.round < 2**64:
            raise ValueError(f"round must be an integer in [0, 2**64), got {self.round!r}")
        for name in ("run_id", "global_hash", "circuit_key", "update_hash", "proof_hash", "data_commitment"):
            object.__setattr__(self, name, _hash32(name, getattr(self, name)))
        for name in ("loss_before", "loss_after"):
            to_fixed(getattr(self, name))  # validates
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_message(self) -> dict[str, Any]:
        """The EIP-712 message (contract field names, fixed-point losses); also the contract call's tuple."""
        return {
            "runId": bytes.fromhex(self.run_id[2:]),
            "round": self.round,
            "globalHash": bytes.fromhex(self.global_hash[2:]),
            "circuitId": bytes.fromhex(self.circuit_key[2:]),
            "updateHash": bytes.fromhex(self.update_hash[2:]),
            "proofHash": bytes.fromhex(self.proof_hash[2:]),
            "dataCommitment": bytes.fromhex(self.data_commitment[2:]),
            "lossBefore": to_fixed(self.loss_before),
            "lossAfter": to_fixed(self.loss_after),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (for a Flower ConfigRecord or a journal)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contribution:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def domain(chain_id: int, registry_address: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": int(chain_id),
        "verifyingContract": to_checksum_address(registry_address),
    }


def signable(contribution: Contribution, chain_id: int, registry_address: str) -> SignableMessage:
    """The EIP-712 encoding of `contribution` for the registry at `registry_address` on `chain_id`."""
    return encode_typed_data(
        domain_data=domain(chain_id, registry_address),
        message_types=CONTRIBUTION_TYPES,
        message_data=contribution.to_message(),
    )


def sign_contribution(
    account_or_key: LocalAccount | str | bytes, contribution: Contribution, chain_id: int, registry_address: str
) -> bytes:
    """The node's 65-byte signature (r ‖ s ‖ v, v in {27, 28}, low s) over `contribution`."""
    account = account_or_key if isinstance(account_or_key, LocalAccount) else Account.from_key(account_or_key)
    return bytes(account.sign_message(signable(contribution, chain_id, registry_address)).signature)


def recover_signer(contribution: Contribution, signature: bytes, chain_id: int, registry_address: str) -> str:
    """The checksummed address that signed `contribution`; ValueError if the signature is malformed.

    Applies the contract's rules (65 bytes, v in {27, 28}, low s), so what passes here passes on chain.
    Any well-formed signature recovers *some* address: compare it with the node you expect.
    """
    signature = bytes(signature)
    if len(signature) != 65:
        raise ValueError(f"a signature is 65 bytes, got {len(signature)}")
    if signature[64] not in (27, 28) or int.from_bytes(signature[32:64], "big") > _HALF_N:
        raise ValueError("malformed signature: v must be 27 or 28 and s in the lower half (EIP-2)")
    return Account.recover_message(signable(contribution, chain_id, registry_address), signature=signature)
