"""Python client of the ContributionRegistry contract: a thin adapter over a web3.py contract object.

Transactions are signed locally (eth-account) by the `sender` key, sent raw, and waited for; a revert raises
ChainError whose message is the contract's decoded custom error in words. Reads return plain dataclasses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import abi_to_signature, function_signature_to_4byte_selector, get_abi_input_types
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception, Web3RPCError
from web3.types import TxReceipt

from contracts.artifacts import load_artifact
from contracts.evm_proof import EvmProof
from contracts.identity import matches_artifact
from contracts.outcomes import Reason, Status
from contracts.typed_data import Contribution, from_fixed, score_to_fixed

log = logging.getLogger(__name__)

ARTIFACT_NAME = "ContributionRegistry"
TOKEN_ARTIFACT = "RewardToken"
BPS = 10_000
ROUND_STATES = {0: "none", 1: "open", 2: "closed"}

# The contract's custom errors in words; {0}, {1}, ... are the error's arguments.
ERROR_TEXT = {
    "OwnableUnauthorizedAccount": "only the registry owner may do this (sender {0})",
    "OwnableInvalidOwner": "{0} cannot own the registry",
    "NotAggregator": "only the aggregator may do this (sender {0})",
    "ZeroAddress": "the zero address is not allowed here",
    "ZeroHash": "a zero hash is not allowed here",
    "RoundAlreadyOpened": "round {0} was already opened",
    "RoundNotOpen": "round {0} is not open",
    "GlobalHashMismatch": "round {0}: the signed global hash {2} is not the round's {1} (stale reply)",
    "MalformedSignature": "malformed signature (needs 65 bytes, v 27/28, low s)",
    "SignerNotApproved": (
        "signer {0} is not an approved node (not approved, revoked, or the signature is by another key "
        "or over other data: round, chain id, registry)"
    ),
    "AlreadyRecorded": "round {0} already has a record for node {1}",
    "InvalidOutcome": "status {0} with reason {1} is not a valid outcome",
    "InvalidCircuit": "a circuit needs a VKA, a proof length and output scales of at most 29 bits",
    "CircuitAlreadyRegistered": "circuit {0} is already registered (a circuit's verifying key never changes)",
    "CircuitNotRegistered": "circuit {0} is not registered (owner: registerCircuit), so its proofs cannot be judged",
    "NonCanonicalProof": "the circuit's proofs are exactly {0} bytes, this one is {1}",
    "ProofRejected": "the proof does not verify for the round's circuit and the signed losses",
    "ProofHashMismatch": "the proof is not the one the node signed (signed proof hash {0}, sha256 of this proof {1})",
    "InvalidParams": "slash and bounty fractions are basis points: at most 10000",
    "NothingStaked": "{0} has nothing staked (or sent no value)",
    "AlreadyExiting": "{0} already asked to unstake",
    "NotExiting": "{0} has not asked to unstake (request_unstake first)",
    "UnstakeLocked": "the stake unlocks when {0} rounds have opened ({1} so far): it stays slashable until then",
    "RoundNotClosed": "round {0} is not closed yet: its rewards are not final",
    "NoReward": "round {0} has no reward for {1} (not SELECTED with a positive score, or slashed)",
    "AlreadyClaimed": "round {0}'s reward for {1} was already paid (or forfeited by a slash)",
    "ProofValid": "the proof verifies with the signed losses for the round's circuit: an honest proof is not slashable",
    "VerifierOutOfGas": "the verifier ran out of gas: send the transaction with more gas",
    "AlreadySlashed": "contribution {0} was already slashed",
    "NotAParticipant": (
        "{0} (the signer recovered for this registry) has no stake and no approval here: the signature is for "
        "another registry or chain, or by a stranger"
    ),
    "TransferFailed": "sending {1} wei to {0} failed",
    "ReentrancyGuardReentrantCall": "reentrant call refused",
    "InvalidShortString": "invalid EIP-712 domain string",
    "StringTooLong": "EIP-712 domain string too long: {0}",
}


class ChainError(RuntimeError):
    """A chain operation failed; the message is one line saying why (a revert reason, a dead node)."""

    def __init__(self, message: str, error_name: str | None = None, error_args: tuple = ()) -> None:
        super().__init__(message)
        self.error_name = error_name  # the contract's custom error, when it reverted with one
        self.error_args = error_args


class ChainUnavailable(ChainError):
    """The chain did not answer: retry later (a journal keeps what is not yet on chain)."""


def _hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _proof_bytes(proof: EvmProof | bytes) -> bytes:
    return proof.proof if isinstance(proof, EvmProof) else bytes(proof)


def _bytes32(value: str | bytes) -> bytes:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}: {value!r}")
    return raw


@dataclass(frozen=True)
class Record:
    """One reply's outcome as stored on chain."""

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

    @classmethod
    def from_chain(cls, raw: Any) -> Record:
        (rnd, node, status, reason, signed, proof_verified, update, proof, data, before, after, score) = raw
        return cls(
            round=rnd, node=node, status=Status(status), reason=Reason(reason), signed=signed,
            proof_verified=proof_verified, update_hash=_hex32(update), proof_hash=_hex32(proof),
            data_commitment=_hex32(data), loss_before=from_fixed(before), loss_after=from_fixed(after),
            score=from_fixed(score),
        )  # fmt: skip


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
class RoundInfo:
    round: int
    state: str  # "none", "open" or "closed"
    opened_at: int  # block timestamps (0 when not yet)
    closed_at: int
    global_hash: str
    circuit_id: str
    new_global_hash: str
    emission: int  # reward token units the round shares among its SELECTED wallets
    score_total: float  # sum of those wallets' positive scores


@dataclass(frozen=True)
class Params:
    """The federation's participation rules (ContributionRegistry.Params), set by the owner."""

    min_stake: int  # wei a wallet must stake to take part
    emission_per_round: int  # reward token units (18 decimals) each round opened from now on shares out
    slash_bps: int  # fraction of the stake slashed for a signed bad proof, in basis points
    bounty_bps: int  # fraction of the slashed amount paid to the slasher (the rest is burned)
    unstake_delay: int  # rounds that must open between an unstake request and the withdrawal
    approval_required: bool  # permissioned: the owner approves each wallet too

    def __post_init__(self) -> None:
        for name in ("min_stake", "emission_per_round", "slash_bps", "bounty_bps", "unstake_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("slash_bps", "bounty_bps"):
            if getattr(self, name) > BPS:
                raise ValueError(f"{name} is in basis points: at most {BPS}, got {getattr(self, name)}")
        if self.unstake_delay >= 2**64:
            raise ValueError(f"unstake_delay must fit in 64 bits, got {self.unstake_delay}")

    def to_chain(self) -> tuple:
        return (self.min_stake, self.emission_per_round, self.slash_bps, self.bounty_bps, self.unstake_delay,
                self.approval_required)  # fmt: skip


@dataclass(frozen=True)
class StakeInfo:
    amount: int  # wei
    unlock_at: int  # rounds opened from which an exiting stake can be withdrawn
    exiting: bool  # unstake requested: no longer takes part, still slashable


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


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A Web3 on `rpc_url`; ChainUnavailable if nothing answers there."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    if not w3.is_connected():
        raise ChainUnavailable(f"no Ethereum node answers at {rpc_url}")
    return w3


class Registry:
    """A deployed ContributionRegistry, and the account that sends its transactions (None: read-only)."""

    def __init__(self, w3: Web3, contract: Contract, sender: LocalAccount | None = None, timeout: float = 120.0):
        self.w3 = w3
        self.contract = contract
        self.sender = sender
        self.timeout = timeout
        self._errors = {
            function_signature_to_4byte_selector(abi_to_signature(item)): item
            for item in contract.abi
            if item["type"] == "error"
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def deploy(cls, w3: Web3, owner_key: str | bytes, aggregator_address: str, timeout: float = 120.0) -> Registry:
        """Deploy a new registry owned by `owner_key`'s account; returns it with the owner as sender."""
        artifact = load_artifact(ARTIFACT_NAME)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        deployer = cls(w3, factory, Account.from_key(owner_key), timeout)
        receipt = deployer._send(factory.constructor(Web3.to_checksum_address(aggregator_address)), "deploy")
        log.info("deployed ContributionRegistry at %s (gas %d)", receipt["contractAddress"], receipt["gasUsed"])
        return cls.at(w3, receipt["contractAddress"], owner_key, timeout)

    @classmethod
    def at(cls, w3: Web3, address: str, sender_key: str | bytes | None = None, timeout: float = 120.0) -> Registry:
        """The registry at `address`; ChainError if no contract is deployed there."""
        address = Web3.to_checksum_address(address)
        try:
            code = w3.eth.get_code(address)
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"cannot reach the chain: {err}") from None
        if not code:
            raise ChainError(f"no contract at {address} on chain {w3.eth.chain_id}")
        artifact = load_artifact(ARTIFACT_NAME)
        if not matches_artifact(bytes(code), artifact):
            raise ChainError(f"the contract at {address} on chain {w3.eth.chain_id} is not this zk0 version's "
                             f"{ARTIFACT_NAME} (its code is not contracts/artifacts/{ARTIFACT_NAME}.json's): check "
                             "the registry address")
        contract = w3.eth.contract(address=address, abi=artifact.abi)
        return cls(w3, contract, Account.from_key(sender_key) if sender_key is not None else None, timeout)

    def with_sender(self, key: str | bytes) -> Registry:
        """The same registry, sending as `key`'s account (e.g. the owner and the aggregator)."""
        return Registry(self.w3, self.contract, Account.from_key(key), self.timeout)

    @property
    def address(self) -> str:
        return self.contract.address

    @property
    def chain_id(self) -> int:
        return self.w3.eth.chain_id

    # ------------------------------------------------------------------ owner
    def approve_node(self, node: str) -> TxReceipt:
        return self._transact("approveNode", Web3.to_checksum_address(node))

    def revoke_node(self, node: str) -> TxReceipt:
        return self._transact("revokeNode", Web3.to_checksum_address(node))

    def set_aggregator(self, aggregator: str) -> TxReceipt:
        return self._transact("setAggregator", Web3.to_checksum_address(aggregator))

    def register_circuit(
        self,
        circuit_id: str | bytes,
        verifier_address: str,
        vka: list[bytes],
        proof_length: int,
        output_scales: tuple[int, int],
    ) -> TxReceipt:
        """Bind `circuit_id` once and for all to its verifying key: proofs of its rounds are checked by the EZKL
        reusable verifier at `verifier_address` with these VKA words, must be `proof_length` bytes, and their
        two public outputs are the losses at `output_scales` (the settings' model_output_scales)."""
        before, after = output_scales
        return self._transact("registerCircuit", _bytes32(circuit_id), Web3.to_checksum_address(verifier_address),
                              [_bytes32(w) for w in vka], int(proof_length), int(before), int(after))  # fmt: skip

    def transfer_ownership(self, new_owner: str) -> TxReceipt:
        """Step 1 of 2: `new_owner` becomes the owner when it calls accept_ownership (Ownable2Step)."""
        return self._transact("transferOwnership", Web3.to_checksum_address(new_owner))

    def accept_ownership(self) -> TxReceipt:
        return self._transact("acceptOwnership")

    # ------------------------------------------------------------------ aggregator
    def open_round(self, round: int, global_hash: str | bytes, circuit_id: str | bytes) -> TxReceipt:
        return self._transact("openRound", round, _bytes32(global_hash), _bytes32(circuit_id))

    def close_round(self, round: int, new_global_hash: str | bytes) -> TxReceipt:
        return self._transact("closeRound", round, _bytes32(new_global_hash))

    def record_contribution(
        self,
        contribution: Contribution,
        signature: bytes,
        status: Status | int,
        reason: Reason | int = Reason.NONE,
        proof: EvmProof | bytes | None = None,
        score: float = 0.0,
    ) -> TxReceipt:
        """Record a signed reply's outcome and the validation score the aggregator attests for it
        (L_val(global) - L_val(update), may be negative); with `proof`, the contract verifies the EZKL proof too,
        against the round's registered circuit, with the public instances that encode the signed losses."""
        args = (contribution.to_message(), bytes(signature), int(Status(status)), int(Reason(reason)),
                score_to_fixed(score))
        if proof is None:
            return self._transact("recordContribution", *args)
        return self._transact("recordContributionWithProof", *args, _proof_bytes(proof))

    def record_rejection(
        self, round: int, flower_node_id: int, reason: Reason | int, evidence_hash: str | bytes = b"\0" * 32
    ) -> TxReceipt:
        """Record a reply rejected before a valid signature for this round existed (MALFORMED .. STALE), under
        rejection_key(flower_node_id): an address nobody holds a key for, never a wallet's slot."""
        return self._transact("recordRejection", round, int(flower_node_id), int(Reason(reason)),
                              _bytes32(evidence_hash))  # fmt: skip

    # ------------------------------------------------------------------ reads
    def owner(self) -> str:
        return self._call("owner")

    def aggregator(self) -> str:
        return self._call("aggregator")

    def pending_owner(self) -> str:
        return self._call("pendingOwner")

    def rejection_key(self, flower_node_id: int) -> str:
        """The address an unsigned rejection of this Flower node is recorded under."""
        return self._call("rejectionKey", int(flower_node_id))

    def circuit(self, circuit_id: str | bytes) -> CircuitInfo:
        verifier, length, before, after, store, digest = self._call("circuit", _bytes32(circuit_id))
        return CircuitInfo(_hex32(_bytes32(circuit_id)), verifier, length, (before, after), store, _hex32(digest))

    def vka(self, circuit_id: str | bytes) -> list[bytes]:
        return [bytes(w) for w in self._call("vka", _bytes32(circuit_id))]

    def is_approved(self, node: str) -> bool:
        return self._call("isApproved", Web3.to_checksum_address(node))

    def has_record(self, round: int, node: str) -> bool:
        """Whether (round, node) is already on chain: lets a journal skip what a retry already wrote."""
        return self._call("hasRecord", round, Web3.to_checksum_address(node))

    def get_record(self, round: int, node: str) -> Record | None:
        raw = self._call("getRecord", round, Web3.to_checksum_address(node))
        return Record.from_chain(raw) if int(raw[1], 16) != 0 else None

    def round_records(self, round: int) -> list[Record]:
        return [Record.from_chain(raw) for raw in self._call("roundRecords", round)]

    def node_history(self, node: str) -> list[Record]:
        return [Record.from_chain(raw) for raw in self._call("nodeHistory", Web3.to_checksum_address(node))]

    def round_info(self, round: int) -> RoundInfo:
        state, opened, closed, global_hash, circuit_id, new_hash, emission, total = self._call("roundInfo", round)
        return RoundInfo(round, ROUND_STATES[state], opened, closed, _hex32(global_hash), _hex32(circuit_id),
                         _hex32(new_hash), emission, from_fixed(total))  # fmt: skip

    # ------------------------------------------------------------------ incentives
    def params(self) -> Params:
        return Params(*self._call("params"))

    def set_params(self, **changes: Any) -> TxReceipt:
        """Owner: change some participation rules (Params field names), keeping the others."""
        return self._transact("setParams", replace(self.params(), **changes).to_chain())

    def stake(self, amount_wei: int) -> TxReceipt:
        """Add `amount_wei` to the sender's stake."""
        return self._transact("stake", value=int(amount_wei))

    def request_unstake(self) -> TxReceipt:
        return self._transact("requestUnstake")

    def withdraw_stake(self) -> TxReceipt:
        return self._transact("withdrawStake")

    def stake_of(self, node: str) -> StakeInfo:
        return StakeInfo(*self._call("stakeOf", Web3.to_checksum_address(node)))

    def rounds_opened(self) -> int:
        return self._call("roundsOpened")

    def reward_of(self, round: int, node: str) -> int:
        """Unpaid reward token units `node`'s record in `round` earned (0 if none, not closed, paid or slashed)."""
        return self._call("rewardOf", round, Web3.to_checksum_address(node))

    def pending_rewards(self, node: str) -> tuple[int, list[int]]:
        """`node`'s unpaid rewards (token units) and the rounds they come from."""
        total, rounds = self._call("pendingRewards", Web3.to_checksum_address(node))
        return total, list(rounds)

    def claim(self, node: str | None = None, rounds: list[int] | None = None) -> TxReceipt:
        """Mint to `node` (default: the sender) its rewards for `rounds` (default: all its unpaid rounds)."""
        node = Web3.to_checksum_address(node or self._sender_address("claim"))
        if rounds is None:
            rounds = self.pending_rewards(node)[1]
            if not rounds:
                raise ChainError(f"claim: {node} has no unpaid rewards")
        return self._transact("claim", node, [int(r) for r in rounds])

    def reward_balance(self, node: str) -> int:
        """Reward tokens `node` holds (18-decimal units)."""
        return self.token().functions.balanceOf(Web3.to_checksum_address(node)).call()

    def token(self) -> Contract:
        """The reward token (an OpenZeppelin ERC-20 only this registry mints)."""
        return self.w3.eth.contract(address=self._call("rewardToken"), abi=load_artifact(TOKEN_ARTIFACT).abi)

    def slash_bad_proof(self, contribution: Contribution, signature: bytes, proof: EvmProof | bytes) -> TxReceipt:
        """Submit a signed contribution whose proof does not verify: the signer's stake is slashed, a bounty
        comes back to the sender. Reverts ProofValid for an honest proof, AlreadySlashed the second time."""
        return self._transact("slashBadProof", contribution.to_message(), bytes(signature), _proof_bytes(proof))

    def is_slashed(self, contribution: Contribution) -> bool:
        return self._call("slashed", self._call("contributionDigest", contribution.to_message()))

    def total_burned(self) -> int:
        return self._call("totalBurned")

    def events(self, name: str | None = None, from_block: int = 0, to_block: int | str = "latest") -> list[dict]:
        """The registry's events (all, or those called `name`) in chain order, as plain dicts."""
        names = [name] if name else [item["name"] for item in self.contract.abi if item["type"] == "event"]
        try:
            logs = [
                log_
                for event_name in names
                for log_ in self.contract.events[event_name].get_logs(from_block=from_block, to_block=to_block)
            ]
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"cannot reach the chain: {err}") from None
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        return [
            {
                "event": e["event"],
                "block": e["blockNumber"],
                "tx_hash": "0x" + bytes(e["transactionHash"]).hex(),
                "args": {k: _hex32(v) if isinstance(v, bytes) else v for k, v in e["args"].items()},
            }
            for e in logs
        ]

    # ------------------------------------------------------------------ plumbing
    def _call(self, function: str, *args: Any) -> Any:
        try:
            return self.contract.functions[function](*args).call()
        except ContractLogicError as err:
            raise self._revert_error(function, err) from None
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"cannot reach the chain: {err}") from None

    def _transact(self, function: str, *args: Any, value: int = 0) -> TxReceipt:
        return self._send(self.contract.functions[function](*args), function, value)

    def _sender_address(self, what: str) -> str:
        if self.sender is None:
            raise ChainError(f"{what}: this Registry is read-only (give a sender key)")
        return self.sender.address

    def _send(self, call: Any, what: str, value: int = 0) -> TxReceipt:
        """Estimate (a revert surfaces here, with its reason), sign locally, send, wait for the receipt."""
        address = self._sender_address(what)
        try:
            nonce = self.w3.eth.get_transaction_count(address, "pending")
            tx = call.build_transaction({"from": address, "nonce": nonce, "value": value})
            tx_hash = self.w3.eth.send_raw_transaction(self.sender.sign_transaction(tx).raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        except ContractLogicError as err:
            raise self._revert_error(what, err) from None
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"{what}: cannot reach the chain: {err}") from None
        except TimeExhausted:
            raise ChainUnavailable(f"{what}: no receipt within {self.timeout:.0f} s") from None
        except (Web3RPCError, Web3Exception) as err:
            raise ChainError(f"{what}: {err}") from None
        if receipt["status"] != 1:  # the state changed between estimate and mining: replay for the reason
            try:
                call.call({"from": address, "value": value}, block_identifier=receipt["blockNumber"])
            except ContractLogicError as err:
                raise self._revert_error(what, err) from None
            raise ChainError(f"{what} reverted in transaction 0x{bytes(tx_hash).hex()}")
        log.debug("%s: gas %d, tx 0x%s", what, receipt["gasUsed"], bytes(tx_hash).hex())
        return receipt

    def _revert_error(self, what: str, err: ContractLogicError) -> ChainError:
        """The contract's custom error, decoded with its ABI and put in words."""
        data = err.data if isinstance(err.data, str) else ""
        item = self._errors.get(bytes.fromhex(data[2:10])) if data.startswith("0x") and len(data) >= 10 else None
        if item is None:
            return ChainError(f"{what} reverted: {err.message or err}")
        types = get_abi_input_types(item)
        values = tuple(
            Web3.to_checksum_address(v) if t == "address" else _hex32(v) if isinstance(v, bytes) else v
            for t, v in zip(types, self.w3.codec.decode(types, bytes.fromhex(data[10:])), strict=True)
        )
        text = ERROR_TEXT.get(item["name"], item["name"]).format(*values)
        return ChainError(f"{what} reverted: {item['name']}: {text}", item["name"], values)
