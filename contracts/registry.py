"""Python client of the ContributionRegistry contract: a thin adapter over a web3.py contract object.

Transactions are signed locally (eth-account) by the `sender` key, sent raw, and waited for; a revert raises
ChainError whose message is the contract's decoded custom error in words. Reads return plain dataclasses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from contracts.typed_data import Contribution, from_fixed

log = logging.getLogger(__name__)

ARTIFACT_NAME = "ContributionRegistry"
ROUND_STATES = {0: "none", 1: "open", 2: "closed"}

# The contract's custom errors in words; {0}, {1}, ... are the error's arguments.
ERROR_TEXT = {
    "NotOwner": "only the registry owner may do this (sender {0})",
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
    "VerifierNotSet": "no proof verifier is set (owner: setVerifier)",
    "ProofRejected": "the verifier rejected the proof",
    "ProofHashMismatch": "the proof is not the one the node signed (signed proof hash {0}, sha256 of this proof {1})",
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

    @classmethod
    def from_chain(cls, raw: Any) -> Record:
        (rnd, node, status, reason, signed, proof_verified, update, proof, data, before, after) = raw
        return cls(
            round=rnd, node=node, status=Status(status), reason=Reason(reason), signed=signed,
            proof_verified=proof_verified, update_hash=_hex32(update), proof_hash=_hex32(proof),
            data_commitment=_hex32(data), loss_before=from_fixed(before), loss_after=from_fixed(after),
        )  # fmt: skip


@dataclass(frozen=True)
class RoundInfo:
    round: int
    state: str  # "none", "open" or "closed"
    opened_at: int  # block timestamps (0 when not yet)
    closed_at: int
    global_hash: str
    circuit_id: str
    new_global_hash: str


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

    def set_verifier(self, verifier_address: str, vka: list[bytes]) -> TxReceipt:
        """Verify proofs with the EZKL reusable verifier at `verifier_address` and this circuit's VKA words."""
        return self._transact("setVerifier", Web3.to_checksum_address(verifier_address), [_bytes32(w) for w in vka])

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
        proof: EvmProof | None = None,
    ) -> TxReceipt:
        """Record a signed reply's outcome; with `proof`, the contract verifies the EZKL proof as well."""
        args = (contribution.to_message(), bytes(signature), int(Status(status)), int(Reason(reason)))
        if proof is None:
            return self._transact("recordContribution", *args)
        return self._transact("recordContributionWithProof", *args, proof.proof, list(proof.instances))

    def record_rejection(
        self, round: int, node: str, reason: Reason | int, evidence_hash: str | bytes = b"\0" * 32
    ) -> TxReceipt:
        """Record a reply rejected before a valid signature for this round existed (MALFORMED .. STALE)."""
        return self._transact(
            "recordRejection", round, Web3.to_checksum_address(node), int(Reason(reason)), _bytes32(evidence_hash)
        )

    # ------------------------------------------------------------------ reads
    def owner(self) -> str:
        return self._call("owner")

    def aggregator(self) -> str:
        return self._call("aggregator")

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
        state, opened, closed, global_hash, circuit_id, new_hash = self._call("roundInfo", round)
        return RoundInfo(
            round, ROUND_STATES[state], opened, closed, _hex32(global_hash), _hex32(circuit_id), _hex32(new_hash)
        )

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

    def _transact(self, function: str, *args: Any) -> TxReceipt:
        return self._send(self.contract.functions[function](*args), function)

    def _send(self, call: Any, what: str) -> TxReceipt:
        """Estimate (a revert surfaces here, with its reason), sign locally, send, wait for the receipt."""
        if self.sender is None:
            raise ChainError(f"{what}: this Registry is read-only (give a sender key)")
        address = self.sender.address
        try:
            nonce = self.w3.eth.get_transaction_count(address, "pending")
            tx = call.build_transaction({"from": address, "nonce": nonce})
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
                call.call({"from": address}, block_identifier=receipt["blockNumber"])
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
