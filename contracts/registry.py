"""Python client of the ContributionRegistry contract: a thin adapter over a web3.py contract object.

Transactions are signed locally (eth-account) by the `sender` key, sent raw, and waited for; a revert raises
ChainError whose message is the contract's decoded custom error in words. Reads return plain dataclasses.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import abi_to_signature, function_signature_to_4byte_selector, get_abi_input_types
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception, Web3RPCError
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts.artifacts import load_artifact
from contracts.evm_proof import EvmProof
from contracts.identity import matches_artifact
from contracts.outcomes import Reason, Status
from contracts.records import (
    ROUND_STATES,
    CircuitInfo,
    Entry,
    Params,
    Record,
    RoundInfo,
    StakeInfo,
    bytes32,
    hex32,
    proof_bytes,
    vka_digest,
)
from contracts.typed_data import Contribution, from_fixed

log = logging.getLogger(__name__)

ARTIFACT_NAME = "ContributionRegistry"
TOKEN_ARTIFACT = "RewardToken"
DEFAULT_PARAMS_DELAY = 86_400  # seconds: a day's notice of a rule change before it binds anyone
GAS_MARGIN = 1.2  # over eth_estimateGas
BATCH_SIZE = 200  # records per recordContributions transaction (~50 k gas each: far below a block's limit)

# The contract's custom errors in words; {0}, {1}, ... are the error's arguments.
ERROR_TEXT = {
    "OwnableUnauthorizedAccount": "only the registry owner may do this (sender {0})",
    "OwnableInvalidOwner": "{0} cannot own the registry",
    "NotAggregator": "only the aggregator may do this (sender {0})",
    "ZeroAddress": "the zero address is not allowed here",
    "ZeroHash": "a zero hash is not allowed here",
    "RoundAlreadyOpened": "round {1} of run {0} was already opened",
    "RoundNotOpen": "round {1} of run {0} is not open",
    "GlobalHashMismatch": "round {0}: the signed global hash {2} is not the round's {1} (stale reply)",
    "CircuitMismatch": "the reply is proved for circuit {1}, the round's circuit is {0}",
    "NoSlashCommitment": "no commitment {0} from an earlier block by this sender: commitSlash first, then slash in "
                         "a later block",
    "RunMismatch": "the reply is signed for run {1} round {3}, not run {0} round {2} (a reply from another run or "
                   "round)",
    "RecordMismatch": "that is not the chain's record of {2} in run {0} round {1} (its fields do not hash to the "
                      "stored hash, or there is none)",
    "EmptyBatch": "a batch of records needs at least one entry",
    "MalformedSignature": "malformed signature (needs 65 bytes, v 27/28, low s)",
    "SignerNotApproved": (
        "signer {0} is not an approved node (not approved, revoked, or the signature is by another key "
        "or over other data: round, chain id, registry)"
    ),
    "AlreadyRecorded": "run {0} round {1} already has a record for node {2}",
    "InvalidOutcome": "status {0} with reason {1} is not a valid outcome",
    "InvalidWeight": "status {0} with weight {1}: only a SELECTED record has a weight, at most WEIGHT_SCALE (1e9)",
    "DuplicateWork": "run {0} round {1} already has a verified record with update or proof hash {2} (one piece of "
                     "work is recorded once: record the copy REJECTED, DUPLICATE)",
    "InvalidCircuit": "a circuit needs a deployed verifier, a VKA, a proof length and output scales of at most 29 "
                      "bits",
    "CircuitAlreadyRegistered": "circuit {0} is already registered (a circuit's verifying key never changes)",
    "CircuitNotRegistered": "circuit {0} is not registered (zk0agg register-circuit), so its proofs cannot be judged",
    "NonCanonicalProof": "the circuit's proofs are exactly {0} bytes, this one is {1}",
    "ProofRejected": "the proof does not verify for the round's circuit and the signed losses",
    "ProofHashMismatch": "the proof is not the one the node signed (signed proof hash {0}, sha256 of this proof {1})",
    "InvalidParams": "over the registry's caps: slash and bounty at most 5000 basis points each, unstake delay at "
                     "most 30 days",
    "NothingStaked": "{0} has nothing staked (or sent no value)",
    "AlreadyExiting": "{0} already asked to unstake",
    "NotExiting": "{0} has not asked to unstake (request_unstake first)",
    "UnstakeLocked": "the stake unlocks at block time {0} (now {1}): it stays slashable until then",
    "RoundNotClosed": "round {1} of run {0} is not closed yet: its rewards are not final",
    "NoReward": "round {0} has no reward for {1} (not SELECTED with a weight, or slashed)",
    "AlreadyClaimed": "round {0}'s reward for {1} was already paid (or forfeited by a slash)",
    "ProofValid": "the proof verifies with the signed losses for the circuit the node signed: an honest proof is not "
                  "slashable",
    "VerifierOutOfGas": "the verifier ran out of gas: send the transaction with more gas",
    "AlreadySlashed": "contribution {0} was already slashed",
    "NotAParticipant": (
        "{0} (the signer recovered for this registry) has no stake and no approval here: the signature is for "
        "another registry or chain, or by a stranger"
    ),
    "TransferFailed": "sending {1} wei to {0} failed",
    "SafeCastOverflowedUintDowncast": "a stake above 2^128 wei is refused",
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
    def deploy(cls, w3: Web3, owner_key: str | bytes, aggregator_address: str, timeout: float = 120.0,
               params_delay: int = DEFAULT_PARAMS_DELAY) -> Registry:
        """Deploy a new registry owned by `owner_key`'s account; returns it with the owner as sender. The owner's
        parameter changes apply `params_delay` seconds after they are made (at once before any stake or round)."""
        artifact = load_artifact(ARTIFACT_NAME)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        deployer = cls(w3, factory, Account.from_key(owner_key), timeout)
        receipt = deployer._send(factory.constructor(Web3.to_checksum_address(aggregator_address), int(params_delay)),
                                 "deploy")
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
        verifier_address: str,
        vka: list[bytes],
        proof_length: int,
        output_scales: tuple[int, int],
    ) -> tuple[str, TxReceipt]:
        """Register a verifying key once and for all; returns its id (``circuitIdOf``, what nodes sign and rounds
        name) and the receipt. Proofs of the circuit are checked by the EZKL reusable verifier at
        `verifier_address` with these VKA words, must be `proof_length` bytes, and their two public outputs are the
        losses at `output_scales` (the settings' model_output_scales). Anyone may register: the id is derived from
        the key."""
        before, after = output_scales
        receipt = self._transact("registerCircuit", Web3.to_checksum_address(verifier_address),
                                 [bytes32(w) for w in vka], int(proof_length), int(before), int(after))  # fmt: skip
        (event,) = self.contract.events.CircuitRegistered().process_receipt(receipt, errors=DISCARD)
        return hex32(event["args"]["circuitId"]), receipt

    def circuit_id_of(self, verifier_codehash: str | bytes, vka: list[bytes], proof_length: int,
                      output_scales: tuple[int, int]) -> str:
        """The contract's own ``circuitIdOf`` (``contracts.circuit_id_of`` computes the same off chain)."""
        return hex32(self._call("circuitIdOf", bytes32(verifier_codehash), vka_digest(vka), int(proof_length),
                                *map(int, output_scales)))  # fmt: skip

    def transfer_ownership(self, new_owner: str) -> TxReceipt:
        """Step 1 of 2: `new_owner` becomes the owner when it calls accept_ownership (Ownable2Step)."""
        return self._transact("transferOwnership", Web3.to_checksum_address(new_owner))

    def accept_ownership(self) -> TxReceipt:
        return self._transact("acceptOwnership")

    # ------------------------------------------------------------------ aggregator
    def open_round(self, run_id: str | bytes, round: int, global_hash: str | bytes,
                   circuit_id: str | bytes) -> TxReceipt:
        """Open round `round` of run `run_id` (the run's first openRound registers it: RunOpened)."""
        return self._transact("openRound", bytes32(run_id), round, bytes32(global_hash), bytes32(circuit_id))

    def close_round(self, run_id: str | bytes, round: int, new_global_hash: str | bytes) -> TxReceipt:
        return self._transact("closeRound", bytes32(run_id), round, bytes32(new_global_hash))

    def record_contributions(self, run_id: str | bytes, round: int, entries: list[Entry]) -> TxReceipt:
        """Record signed replies' outcomes of one round in one transaction (all or nothing): the contract checks
        each node's signature, stores one hash per record and emits each record whole."""
        return self._transact("recordContributions", bytes32(run_id), round, [e.to_chain() for e in entries])

    def record_contribution(
        self,
        contribution: Contribution,
        signature: bytes,
        status: Status | int,
        reason: Reason | int = Reason.NONE,
        proof: EvmProof | bytes | None = None,
        score: float = 0.0,
        weight: float = 0.0,
    ) -> TxReceipt:
        """Record one signed reply's outcome and the validation score the aggregator attests for it
        (L_val(global) - L_val(update), may be negative); with `proof`, the contract verifies the EZKL proof too,
        against the round's registered circuit, with the public instances that encode the signed losses."""
        entry = Entry(contribution, bytes(signature), Status(status), Reason(reason), score, weight)
        if proof is None:
            return self.record_contributions(contribution.run_id, contribution.round, [entry])
        return self._transact("recordContributionWithProof", *entry.to_chain(), proof_bytes(proof))

    def record_rejection(
        self, run_id: str | bytes, round: int, flower_node_id: int, reason: Reason | int,
        evidence_hash: str | bytes = b"\0" * 32,
    ) -> TxReceipt:
        """Record a reply rejected before a valid signature for this round existed (MALFORMED .. STALE), under
        rejection_key(flower_node_id): an address nobody holds a key for, never a wallet's slot."""
        return self._transact("recordRejection", bytes32(run_id), round, int(flower_node_id), int(Reason(reason)),
                              bytes32(evidence_hash))  # fmt: skip

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
        verifier, length, before, after, store, digest = self._call("circuit", bytes32(circuit_id))
        return CircuitInfo(hex32(bytes32(circuit_id)), verifier, length, (before, after), store, hex32(digest))

    def vka(self, circuit_id: str | bytes) -> list[bytes]:
        return [bytes(w) for w in self._call("vka", bytes32(circuit_id))]

    def is_approved(self, node: str) -> bool:
        return self._call("isApproved", Web3.to_checksum_address(node))

    def has_record(self, run_id: str | bytes, round: int, node: str) -> bool:
        """Whether (run, round, node) is already on chain: lets a journal skip what a retry already wrote."""
        return self._call("hasRecord", bytes32(run_id), round, Web3.to_checksum_address(node))

    def record_hash(self, run_id: str | bytes, round: int, node: str) -> str | None:
        """The stored hash of (run, round, node)'s record (``Record.hash()`` of the chain's record), None if none."""
        value = self._call("recordHash", bytes32(run_id), round, Web3.to_checksum_address(node))
        return None if int.from_bytes(value, "big") == 0 else hex32(value)

    def records(self, run_id: str | bytes | None = None, round: int | None = None, node: str | None = None,
                from_block: int = 0) -> list[Record]:
        """Records from the ContributionRecorded events (the chain keeps only their hashes in storage), filtered
        by run, round and node, in chain order."""
        filters: dict[str, Any] = {}
        if run_id is not None:
            filters["runId"] = bytes32(run_id)
        if round is not None:
            filters["round"] = int(round)
        if node is not None:
            filters["node"] = Web3.to_checksum_address(node)
        return [self.record_of_event(e) for e in self.events("ContributionRecorded", from_block=from_block, **filters)]

    @staticmethod
    def record_of_event(event: dict) -> Record:
        """A ContributionRecorded event (as ``events`` returns it) as a Record."""
        a = event["args"]
        return Record.from_chain((a["runId"], a["round"], a["node"], a["status"], a["reason"], a["signed"],
                                  a["proofVerified"], a["updateHash"], a["proofHash"], a["dataCommitment"],
                                  a["lossBefore"], a["lossAfter"], a["score"], a["weight"]))  # fmt: skip

    def get_record(self, run_id: str | bytes, round: int, node: str) -> Record | None:
        """(run, round, node)'s record, read from its event and checked against the stored hash."""
        found = self.records(run_id, round, node)
        if not found:
            return None
        record = found[-1]
        if self.record_hash(run_id, round, node) != record.hash():
            raise ChainError(f"the event of run {record.run_id} round {round} node {node} does not hash to the "
                             "stored record hash")
        return record

    def round_records(self, run_id: str | bytes, round: int) -> list[Record]:
        return self.records(run_id, round)

    def node_history(self, node: str, run_id: str | bytes | None = None) -> list[Record]:
        """`node`'s records in every run (or in `run_id`), in chain order."""
        return self.records(run_id, node=node)

    def round_info(self, run_id: str | bytes, round: int) -> RoundInfo:
        raw = self._call("roundInfo", bytes32(run_id), round)
        state, opened, closed, approval, global_hash, circuit_id, new_hash, emission, total, min_stake = raw
        return RoundInfo(hex32(bytes32(run_id)), round, ROUND_STATES[state], opened, closed, hex32(global_hash),
                         hex32(circuit_id), hex32(new_hash), emission, from_fixed(total), min_stake,
                         approval)  # fmt: skip

    def runs(self) -> list[dict]:
        """Every run the registry knows: its id, aggregator, first round and the block it started in."""
        return [{"run_id": e["args"]["runId"], "aggregator": e["args"]["aggregator"],
                 "first_round": e["args"]["firstRound"], "block": e["block"], "tx_hash": e["tx_hash"]}
                for e in self.events("RunOpened")]  # fmt: skip

    def rounds(self, run_id: str | bytes | None = None) -> list[tuple[str, int]]:
        """(run id, round) of every round opened (in `run_id`), in chain order."""
        filters = {} if run_id is None else {"runId": bytes32(run_id)}
        return [(e["args"]["runId"], e["args"]["round"]) for e in self.events("RoundOpened", **filters)]

    # ------------------------------------------------------------------ incentives
    def params(self) -> Params:
        return Params(*self._call("params"))

    def set_params(self, **changes: Any) -> TxReceipt:
        """Owner: change some participation rules (Params field names), keeping the others (a change still
        pending included). They apply after the registry's paramsDelay (at once before any stake or round)."""
        pending, _ = self.pending_params()
        return self._transact("setParams", replace(pending or self.params(), **changes).to_chain())

    def pending_params(self) -> tuple[Params | None, int]:
        """The owner's scheduled change and the block timestamp it applies from; (None, 0) when none is pending."""
        raw, effective_at = self._call("pendingParams")
        return (Params(*raw), effective_at) if effective_at else (None, 0)

    def params_delay(self) -> int:
        """Seconds between a parameter change and its effect (fixed at deployment)."""
        return self._call("paramsDelay")

    def total_staked(self) -> int:
        return self._call("totalStaked")

    def stake(self, amount_wei: int) -> TxReceipt:
        """Add `amount_wei` to the sender's stake."""
        return self._transact("stake", value=int(amount_wei))

    def request_unstake(self) -> TxReceipt:
        return self._transact("requestUnstake")

    def withdraw_stake(self) -> TxReceipt:
        return self._transact("withdrawStake")

    def stake_of(self, node: str) -> StakeInfo:
        node = Web3.to_checksum_address(node)
        return StakeInfo(*self._call("stakeOf", node), unlock_at=self._call("unlockTime", node))

    def rounds_opened(self) -> int:
        return self._call("roundsOpened")

    def reward_of(self, record: Record) -> int:
        """Unpaid reward token units `record` (the chain's, from its event) earned: 0 if none, the round is not
        closed, or it was paid or slashed."""
        return self._call("rewardOf", record.chain)

    def pending_rewards(self, node: str) -> tuple[int, list[Record]]:
        """`node`'s unpaid rewards (token units) and the records they come from (read from its events)."""
        earning = [(r, self.reward_of(r)) for r in self.node_history(node)
                   if r.status == Status.SELECTED and r.weight > 0]
        paid = [(r, amount) for r, amount in earning if amount > 0]
        return sum(amount for _, amount in paid), [r for r, _ in paid]

    def claim(self, node: str | None = None, records: list[Record] | None = None) -> TxReceipt:
        """Mint to `node` (default: the sender) its rewards for `records` (default: all its unpaid ones)."""
        node = Web3.to_checksum_address(node or self._sender_address("claim"))
        if records is None:
            records = self.pending_rewards(node)[1]
            if not records:
                raise ChainError(f"claim: {node} has no unpaid rewards")
        return self._transact("claim", node, [r.chain for r in records])

    def reward_balance(self, node: str) -> int:
        """Reward tokens `node` holds (18-decimal units)."""
        return self.token().functions.balanceOf(Web3.to_checksum_address(node)).call()

    def token(self) -> Contract:
        """The reward token (an OpenZeppelin ERC-20 only this registry mints)."""
        return self.w3.eth.contract(address=self._call("rewardToken"), abi=load_artifact(TOKEN_ARTIFACT).abi)

    def slash_bad_proof(self, contribution: Contribution, signature: bytes, proof: EvmProof | bytes) -> TxReceipt:
        """Submit a signed contribution whose proof does not verify: the signer's stake is slashed, a bounty
        comes back to the sender. Two transactions: a commitment to the evidence (commitSlash), then, once it is
        mined, the evidence itself, so a copier of the second one gets nothing. Reverts ProofValid for an honest
        proof, AlreadySlashed the second time."""
        salt = self.commit_slash(contribution)
        return self._transact("slashBadProof", contribution.to_message(), bytes(signature), proof_bytes(proof), salt)

    def commit_slash(self, contribution: Contribution) -> bytes:
        """Step 1 of a slash: commit (in a mined transaction) to slashing `contribution` as the sender, with a fresh
        salt, returned for step 2 (slashBadProof, in a later block)."""
        salt = os.urandom(32)
        digest = self._call("contributionDigest", contribution.to_message())
        self._transact("commitSlash", self._call("slashCommitment", self._sender_address("slash"), digest, salt))
        return salt

    def is_slashed(self, contribution: Contribution, node: str) -> bool:
        """Whether ``node``'s signature of ``contribution`` was slashed (once per signer)."""
        digest = self._call("contributionDigest", contribution.to_message())
        return self._call("slashed", self._call("slashKey", digest, Web3.to_checksum_address(node)))

    def total_burned(self) -> int:
        return self._call("totalBurned")

    def events(self, name: str | None = None, from_block: int = 0, to_block: int | str = "latest",
               **filters: Any) -> list[dict]:
        """The registry's events (all, or those called `name`, with indexed arguments equal to `filters`) in chain
        order, as plain dicts."""
        names = [name] if name else [item["name"] for item in self.contract.abi if item["type"] == "event"]
        try:
            logs = [
                log_
                for event_name in names
                for log_ in self.contract.events[event_name].get_logs(
                    from_block=from_block, to_block=to_block, argument_filters=filters or None)
            ]
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"cannot reach the chain: {err}") from None
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        return [
            {
                "event": e["event"],
                "block": e["blockNumber"],
                "tx_hash": "0x" + bytes(e["transactionHash"]).hex(),
                "args": {k: hex32(v) if isinstance(v, bytes) else v for k, v in e["args"].items()},
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
            # estimated in the block it will be mined in (a slash checks its commitment is from an earlier one),
            # with a margin: that block's timestamp can make a record's storage write dearer than estimated
            gas = call.estimate_gas({"from": address, "value": value}, block_identifier="pending")
            tx = call.build_transaction({"from": address, "nonce": nonce, "value": value,
                                         "gas": int(gas * GAS_MARGIN)})
            tx_hash = self.w3.eth.send_raw_transaction(self.sender.sign_transaction(tx).raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        except ContractLogicError as err:
            raise self._revert_error(what, err) from None
        except (RequestsConnectionError, RequestsTimeout) as err:
            raise ChainUnavailable(f"{what}: cannot reach the chain: {err}") from None
        except TimeExhausted:
            raise ChainUnavailable(f"{what}: no receipt within {self.timeout:.0f} s") from None
        except (Web3RPCError, Web3Exception) as err:
            if _insufficient_funds(err):
                raise ChainError(self._unfunded_text(what, address, value), "InsufficientFunds") from None
            raise ChainError(f"{what}: {err}") from None
        if receipt["status"] != 1:  # the state changed between estimate and mining: replay for the reason
            try:
                call.call({"from": address, "value": value}, block_identifier=receipt["blockNumber"])
            except ContractLogicError as err:
                raise self._revert_error(what, err) from None
            raise ChainError(f"{what} reverted in transaction 0x{bytes(tx_hash).hex()}")
        log.debug("%s: gas %d, tx 0x%s", what, receipt["gasUsed"], bytes(tx_hash).hex())
        return receipt

    def _unfunded_text(self, what: str, address: str, value: int) -> str:
        """One line for a sender whose ETH does not cover ``value`` and the gas: what it has, and how to fund it
        on a dev chain (``zk0agg chain fund``: anvil's ``anvil_setBalance``; or Foundry's ``cast send`` from a funded
        key)."""
        try:
            balance = f"{self.w3.eth.get_balance(address) / 10**18:g} ETH"
        except Exception:  # noqa: BLE001 - the balance only decorates the message
            balance = "too little ETH"
        sends = f"the {value / 10**18:g} ETH it sends and " if value else ""
        rpc = getattr(self.w3.provider, "endpoint_uri", None) or "RPC_URL"
        return (f"{what}: wallet {address} has {balance}, not enough for {sends}the gas: send it ETH first (on a "
                f"dev chain: zk0agg chain fund {address} --rpc {rpc}, anvil's anvil_setBalance; or from a funded "
                f"key: cast send {address} --value 10ether --private-key KEY --rpc-url {rpc})")

    def _revert_error(self, what: str, err: ContractLogicError) -> ChainError:
        """The contract's custom error, decoded with its ABI and put in words."""
        data = err.data if isinstance(err.data, str) else ""
        item = self._errors.get(bytes.fromhex(data[2:10])) if data.startswith("0x") and len(data) >= 10 else None
        if item is None:
            return ChainError(f"{what} reverted: {err.message or err}")
        types = get_abi_input_types(item)
        values = tuple(
            Web3.to_checksum_address(v) if t == "address" else hex32(v) if isinstance(v, bytes) else v
            for t, v in zip(types, self.w3.codec.decode(types, bytes.fromhex(data[10:])), strict=True)
        )
        text = ERROR_TEXT.get(item["name"], item["name"]).format(*values)
        return ChainError(f"{what} reverted: {item['name']}: {text}", item["name"], values)


def _insufficient_funds(err: Exception) -> bool:
    """The node refused a transaction because the sender cannot pay its value and gas (anvil: -32003
    "Insufficient funds for gas * price + value"; geth: -32000 "insufficient funds for gas * price + value")."""
    data = err.args[0] if err.args else err
    message = data.get("message", "") if isinstance(data, dict) else str(data)
    return "insufficient funds" in str(message).lower()
