"""What the registry holds, as Python values: records, rounds, circuits, participation rules and stakes.

Plain frozen dataclasses with their exact on-chain encodings (``to_chain``, ``from_chain``, ``Record.hash``), so the
client (``contracts.registry``), the journal's sender and the readers all build and compare the same tuples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from web3 import Web3

from contracts.evm_proof import EvmProof
from contracts.outcomes import Reason, Status
from contracts.typed_data import Contribution, from_fixed, score_to_fixed, weight_to_fixed

BPS = 10_000
MAX_SLASH_BPS = 5_000  # ContributionRegistry's caps on the owner's parameters
MAX_BOUNTY_BPS = 5_000
MAX_UNSTAKE_DELAY = 30 * 86_400  # seconds
ROUND_STATES = {0: "none", 1: "open", 2: "closed"}
RECORD_TYPES = ("bytes32", "uint64", "address", "uint8", "uint8", "bool", "bool", "bytes32", "bytes32", "bytes32",
                "uint256", "uint256", "int256", "uint256")  # ContributionRegistry.Record, field by field


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def proof_bytes(proof: EvmProof | bytes) -> bytes:
    return proof.proof if isinstance(proof, EvmProof) else bytes(proof)


def new_run_id(name: str, aggregator: str, salt: bytes | None = None) -> str:
    """A fresh run id: keccak256(name ‖ aggregator address ‖ 32 random bytes). Chosen off chain when a run starts
    fresh (no chain round trip), kept in summary.json so a resume keeps it; nodes sign it."""
    salt = os.urandom(32) if salt is None else salt
    return hex32(Web3.keccak(name.encode() + bytes.fromhex(Web3.to_checksum_address(aggregator)[2:]) + salt))


def bytes32(value: str | bytes) -> bytes:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}: {value!r}")
    return raw


@dataclass(frozen=True)
class Record:
    """One reply's outcome as the chain holds it: emitted whole in ContributionRecorded, stored as its hash."""

    run_id: str
    round: int
    node: str
    status: Status
    reason: Reason
    signed: bool  # the contract checked the node's signature
    proof_verified: bool  # the contract verified the EZKL proof
    update_hash: str
    proof_hash: str
    data_commitment: str  # for unsigned rejections: the aggregator's evidence hash
    loss_before: float
    loss_after: float
    score: float  # the validation score the aggregator attested (0.0 for unsigned rejections)
    weight: float  # its share of the round's new global model (0.0 unless SELECTED): what its reward follows
    chain: tuple = field(default=(), repr=False, compare=False)  # the exact on-chain tuple (fixed-point values)

    @classmethod
    def from_chain(cls, raw: tuple) -> Record:
        """From the contract's Record tuple (the fields of ContributionRecorded, in order)."""
        run, rnd, node, status, reason, signed, proof_verified, update, proof, data, before, after, score, weight = raw
        return cls(
            run_id=hex32(bytes32(run)), round=rnd, node=Web3.to_checksum_address(node), status=Status(status),
            reason=Reason(reason), signed=signed, proof_verified=proof_verified, update_hash=hex32(bytes32(update)),
            proof_hash=hex32(bytes32(proof)), data_commitment=hex32(bytes32(data)), loss_before=from_fixed(before),
            loss_after=from_fixed(after), score=from_fixed(score), weight=from_fixed(weight),
            chain=(bytes32(run), rnd, Web3.to_checksum_address(node), int(status), int(reason), bool(signed),
                   bool(proof_verified), bytes32(update), bytes32(proof), bytes32(data), before, after, score, weight),
        )  # fmt: skip

    @classmethod
    def signed_outcome(cls, c: Contribution, node: str, status: Status | int, reason: Reason | int, score: float,
                       weight: float = 0.0, proof_verified: bool = False) -> Record:
        """The record the contract stores for a signed reply (what recordContributions builds from an entry)."""
        m = c.to_message()
        return cls.from_chain((m["runId"], c.round, node, int(status), int(reason), True, proof_verified,
                               m["updateHash"], m["proofHash"], m["dataCommitment"], m["lossBefore"], m["lossAfter"],
                               score_to_fixed(score), weight_to_fixed(weight)))  # fmt: skip

    @classmethod
    def rejection(cls, run_id: str, round: int, key: str, reason: Reason | int, evidence_hash: str) -> Record:
        """The record of an unsigned rejection under rejection key `key` (what recordRejection stores)."""
        return cls.from_chain((bytes32(run_id), round, key, int(Status.REJECTED), int(reason), False, False,
                               b"\0" * 32, b"\0" * 32, bytes32(evidence_hash), 0, 0, 0, 0))  # fmt: skip

    def hash(self) -> str:
        """keccak256(abi.encode(record)): what the registry stores for it (its recordHash)."""
        return hex32(Web3.keccak(abi_encode(list(RECORD_TYPES), list(self.chain))))


def vka_digest(vka: list[bytes] | tuple[bytes, ...]) -> bytes:
    """keccak256 of the VKA words packed: the registry's (and the reusable verifier's) digest of a verifying key."""
    return Web3.keccak(b"".join(bytes32(w) for w in vka))


def circuit_id_of(verifier_codehash: str | bytes, vka: list[bytes] | tuple[bytes, ...], proof_length: int,
                  output_scales: tuple[int, int]) -> str:
    """The registry's id of a circuit (``circuitIdOf``): derived from all that judges its proofs, the verifier's
    code hash, the VKA's digest, the exact proof length and the two output scales. A node signs it, so its proof
    is judged by this key and no other, and nobody can register another key under it."""
    digest = vka_digest(vka)
    before, after = output_scales
    return hex32(Web3.keccak(abi_encode(["string", "bytes32", "bytes32", "uint32", "uint8", "uint8"],
                                        ["zk0:circuit", bytes32(verifier_codehash), digest, int(proof_length),
                                         int(before), int(after)])))  # fmt: skip


@dataclass(frozen=True)
class CircuitInfo:
    """A circuit registered on chain: the verifier, VKA digest and proof format its rounds' proofs must have."""

    circuit_id: str
    verifier: str
    proof_length: int
    output_scales: tuple[int, int]
    vka_store: str
    vka_digest: str

    @property
    def registered(self) -> bool:
        return int(self.verifier, 16) != 0


@dataclass(frozen=True)
class Entry:
    """One signed reply's outcome for recordContributions: what the node signed, its signature, the verdict."""

    contribution: Contribution
    signature: bytes
    status: Status
    reason: Reason = Reason.NONE
    score: float = 0.0
    weight: float = 0.0  # its share of the round's average (SELECTED only)

    def to_chain(self) -> tuple:
        return (self.contribution.to_message(), bytes(self.signature), int(Status(self.status)),
                int(Reason(self.reason)), score_to_fixed(self.score), weight_to_fixed(self.weight))  # fmt: skip


def earned(emission: int, weight: int, weight_total: int) -> int:
    """Reward-token units a SELECTED record of a closed round earns, as the contract's ``_earned`` computes them:
    the round's emission × the record's weight in the round's average ÷ the round's weight total (weights at
    ``WEIGHT_SCALE`` fixed point); 0 without weight. The one Python copy of the rule: every reader that shows a
    reward uses it."""
    return emission * weight // weight_total if weight > 0 and weight_total > 0 else 0


@dataclass(frozen=True)
class RoundInfo:
    run_id: str
    round: int
    state: str  # "none", "open" or "closed"
    opened_at: int  # block timestamps (0 when not yet)
    closed_at: int
    global_hash: str
    circuit_id: str
    new_global_hash: str
    emission: int  # reward token units the round shares among its SELECTED wallets
    weight_total: float  # sum of those wallets' weights in the round's average (each earns its share of it)
    min_stake: int = 0  # wei a signer needs in this round: the registry's minStake when the round opened
    approval_required: bool = False  # its signers need the owner's approval (the registry's rule when it opened)


@dataclass(frozen=True)
class Params:
    """The federation's participation rules (ContributionRegistry.Params), set by the owner within the caps; a
    change applies the registry's paramsDelay seconds after it is made."""

    min_stake: int  # wei a wallet must stake to take part
    emission_per_round: int  # reward token units (18 decimals) each round opened from now on shares out
    slash_bps: int  # fraction of the stake slashed for a signed bad proof, in basis points
    bounty_bps: int  # fraction of the slashed amount paid to the slasher (the rest is burned)
    unstake_delay: int  # seconds after the exit request and the last record before a stake can be withdrawn
    approval_required: bool  # permissioned: the owner approves each wallet too

    def __post_init__(self) -> None:
        for name in ("min_stake", "emission_per_round", "slash_bps", "bounty_bps", "unstake_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name, cap in (("slash_bps", MAX_SLASH_BPS), ("bounty_bps", MAX_BOUNTY_BPS)):
            if getattr(self, name) > cap:
                raise ValueError(f"{name} is in basis points, capped by the registry at {cap}: got "
                                 f"{getattr(self, name)}")
        if self.unstake_delay > MAX_UNSTAKE_DELAY:
            raise ValueError(f"unstake_delay is capped by the registry at {MAX_UNSTAKE_DELAY} s (30 days), got "
                             f"{self.unstake_delay}")

    def to_chain(self) -> tuple:
        return (self.min_stake, self.emission_per_round, self.slash_bps, self.bounty_bps, self.unstake_delay,
                self.approval_required)  # fmt: skip


@dataclass(frozen=True)
class StakeInfo:
    amount: int  # wei
    exit_at: int  # block timestamp of the unstake request (0: not exiting)
    last_record_at: int  # block timestamp of its last signed record
    unlock_at: int = 0  # block timestamp from which an exiting stake can be withdrawn (registry.unlockTime)

    @property
    def exiting(self) -> bool:
        """Unstake requested: takes no part in rounds opened later, still slashable until ``unlock_at``."""
        return self.exit_at != 0


def parse_amount(text: str) -> int:
    """'1.5' (ETH or reward tokens: 18 decimals) or '1500wei' as integer units; ValueError saying what is wrong."""
    from decimal import Decimal, InvalidOperation

    text = str(text).strip()
    try:
        value = Decimal(text[:-3]) if text.endswith("wei") else Decimal(text) * 10**18
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount like 1.5 (18 decimals) or 1500wei") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a non-negative amount of at most 18 decimals")
    return int(value)
