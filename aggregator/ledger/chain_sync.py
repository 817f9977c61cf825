"""Sends the journal to the registry: in order, with retries, exactly once, and never adopting what it did not send.

The aggregator journals an operation, then calls ``flush`` (and a background thread keeps flushing while the
chain is away). Before sending, the sender asks the chain whether the operation's slot is already filled (a send
whose receipt was lost to a crash) and compares what is there with the journal's payload: equal, it adopts it;
different, it fails loudly (the row is marked failed with the mismatch and no transaction is reported for it).
A round's signed records go in one ``recordContributions`` transaction (chunks of ``BATCH_SIZE``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from web3 import Web3

from aggregator.ledger.journal import Journal, Op
from contracts import ChainError, ChainUnavailable, Contribution, Entry, EvmProof, Reason, Record, Registry, Status
from contracts.registry import BATCH_SIZE

log = logging.getLogger(__name__)


class Mismatch(ChainError):
    """The chain already holds this operation's slot with other values: not ours, never adopted."""


class ChainSync:
    """Journal → registry for run ``run_id``. ``on_done(op, tx_hash)`` is called once per operation that reaches
    the chain (sent, or found there equal to the journal's payload)."""

    def __init__(self, registry: Registry, journal: Journal, run_id: str,
                 on_done: Callable[[Op, str | None], None] | None = None, retry_interval: float = 2.0) -> None:
        self.registry = registry
        self.journal = journal
        self.run_id = run_id
        self.on_done = on_done
        self.retry_interval = retry_interval
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._judged: dict[int, Op] = {}  # held-out records the registry judged when sent (see _send)

    # ----------------------------------------------------------------- journalling
    def open_round(self, round_: int, global_hash: str, circuit_id: str) -> None:
        """Sent as soon as possible: a re-run of the round from the same checkpoint opens with the same payload."""
        self.journal.add(self.run_id, "open", round_, "", {"global_hash": global_hash, "circuit_id": circuit_id})

    def record(self, round_: int, node: str, contribution: Contribution, signature: bytes, status: Status,
               reason: Reason, node_id: int, proof: EvmProof | None = None, score: float = 0.0,
               weight: float = 0.0, approval_unchecked: bool = False) -> None:
        """A signed reply's outcome, its validation score and weight (held until ``release``); ``node`` is the
        signer the gate recovered. ``approval_unchecked``: the gate could not read the signer's approval (an
        outage): the registry decides when the record is sent (see ``_send``)."""
        payload = {"contribution": contribution.to_dict(), "signature": "0x" + bytes(signature).hex(),
                   "status": int(status), "reason": int(reason), "node_id": node_id, "score": float(score),
                   "weight": float(weight),
                   "approval_unchecked": approval_unchecked,
                   "proof": None if proof is None else {"proof": "0x" + proof.proof.hex(),
                                                        "instances": [str(i) for i in proof.instances]}}
        self.journal.add(self.run_id, "record", round_, node.lower(), payload, held=True)

    def reject(self, round_: int, node: str, reason: Reason, evidence_hash: str, node_id: int) -> None:
        """An unsigned rejection (held until ``release``)."""
        self.journal.add(self.run_id, "reject", round_, node.lower(),
                         {"node": node, "reason": int(reason), "evidence_hash": evidence_hash, "node_id": node_id},
                         held=True)

    def close_round(self, round_: int, new_global_hash: str) -> None:
        self.journal.add(self.run_id, "close", round_, "", {"new_global_hash": new_global_hash})

    def release(self, round_: int) -> int:
        """Round ``round_`` is committed in summary.json: its held outcomes may go to the chain."""
        return self.journal.release(self.run_id, round_)

    def settle(self, committed: dict[int, str]) -> dict[str, int]:
        """After a stop (a crash, Ctrl-C, a kill), before sending: ``committed`` maps the rounds summary.json holds
        to their new global hashes. Their held outcomes are released and their closeRound journalled if the stop
        came first; held outcomes of any other round (an attempt the summary never recorded) are superseded, never
        sent. ``--resume`` and ``zk0agg sync`` both start here."""
        result = self.journal.reconcile(self.run_id, committed)
        for round_, new_hash in sorted(committed.items()):
            self.close_round(round_, new_hash)  # already journalled: ignored (a different hash: JournalError)
        return result

    # ----------------------------------------------------------------- sending
    def flush(self) -> int:
        """Send this run's pending operations, in order; stop at the first outage. Returns how many remain."""
        with self._flush_lock:
            ops = self.journal.pending(self.run_id)
            i = 0
            while i < len(ops):
                batch = self._batch(ops, i)
                i += len(batch)
                try:
                    self._flush_batch(batch)
                except ChainUnavailable as err:
                    self.last_error = str(err)
                    for op in batch:
                        self.journal.note_attempt(op.id, str(err))
                    log.warning("chain unavailable, %d operation(s) wait in the journal: %s",
                                len(self.journal.pending(self.run_id)), err)
                    break
            return len(self.journal.pending(self.run_id))

    def _flush_batch(self, batch: list[Op]) -> None:
        """Adopt or refuse what the chain already holds, send the rest (a batch, or one by one if it reverts)."""
        to_send = []
        for op in batch:
            try:
                found = self._already_done(op)
            except Mismatch as err:
                self._fail(op, err)
                continue
            if found is False:
                to_send.append(op)
            else:
                self._done(op, found)
        if len(to_send) > 1:
            try:
                tx_hash = self._send_records(to_send)
            except ChainUnavailable:
                raise
            except ChainError as err:  # one entry refused reverts them all: send each alone to find it
                log.warning("batch of %d records of round %d refused (%s): sending them one by one", len(to_send),
                            to_send[0].round, err)
            else:
                for op in to_send:
                    self._done(op, tx_hash)
                return
        for op in to_send:
            try:
                tx_hash = self._send(op)
            except ChainUnavailable:
                raise
            except ChainError as err:  # the contract refused: permanent, keep it visible
                self._fail(op, err)
                continue
            self._done(op, tx_hash)

    def _done(self, op: Op, tx_hash: str | None) -> None:
        self.journal.mark_done(op.id, tx_hash)
        self.last_error = None
        if self.on_done is not None:
            self.on_done(self._judged.pop(op.id, op), tx_hash)

    def _fail(self, op: Op, err: ChainError) -> None:
        self.journal.mark_failed(op.id, str(err))
        log.error("chain refused %s of run %s round %d %s: %s", op.kind, op.run_id[:10], op.round, op.node, err)

    @staticmethod
    def _batch(ops: list[Op], start: int) -> list[Op]:
        """ops[start] alone, or with the signed records (no on-chain proof) of the same round right after it."""
        first = ops[start]
        if not _batchable(first):
            return [first]
        end = start + 1
        while (end < len(ops) and end - start < BATCH_SIZE and _batchable(ops[end])
               and (ops[end].run_id, ops[end].round) == (first.run_id, first.round)):
            end += 1
        return ops[start:end]

    def start(self) -> ChainSync:
        """Keep flushing in the background (every ``retry_interval`` s) until ``stop``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="zk0-chain-sync", daemon=True)
            self._thread.start()
        return self

    def drain(self, timeout: float) -> int:
        """Flush until nothing is pending or ``timeout`` s pass; returns how many remain pending."""
        deadline = time.monotonic() + timeout
        while (left := self.flush()) and time.monotonic() < deadline:
            time.sleep(self.retry_interval)
        return left

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.retry_interval):
            try:
                self.flush()
            except Exception:  # never let the sender thread die: the journal keeps everything
                log.exception("chain sync failed; retrying")

    # ----------------------------------------------------------------- per kind
    def _send_records(self, ops: list[Op]) -> str:
        receipt = self.registry.record_contributions(ops[0].run_id, ops[0].round, [_entry(op.payload) for op in ops])
        log.info("round %d: %d records in one transaction (gas %d)", ops[0].round, len(ops), receipt["gasUsed"])
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def _send(self, op: Op) -> str:
        p = op.payload
        if op.kind == "open":
            receipt = self.registry.open_round(op.run_id, op.round, p["global_hash"], p["circuit_id"])
        elif op.kind == "close":
            receipt = self.registry.close_round(op.run_id, op.round, p["new_global_hash"])
        elif op.kind == "record" and p.get("approval_unchecked") and not self.registry.is_approved(op.node):
            # Held out during an outage, and the registry now says the signer is not approved: that is the verdict.
            verdict = ["REJECTED", "UNKNOWN_NODE", f"{op.node} is not approved (checked once the chain was back)"]
            self._judged[op.id] = replace(op, kind="reject", payload={**p, "verdict": verdict})
            receipt = self.registry.record_rejection(op.run_id, op.round, p["node_id"], Reason.UNKNOWN_NODE,
                                                     p["contribution"]["update_hash"])
        elif op.kind == "record":
            e = _entry(p)
            receipt = self.registry.record_contribution(e.contribution, e.signature, e.status, e.reason,
                                                        proof=_proof(p), score=e.score, weight=e.weight)
        elif op.kind == "reject":
            receipt = self.registry.record_rejection(op.run_id, op.round, p["node_id"], Reason(p["reason"]),
                                                     p["evidence_hash"])
        else:
            raise ChainError(f"unknown journal operation {op.kind!r}")
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def _already_done(self, op: Op) -> str | None | bool:
        """False if the operation's slot is empty on chain; its transaction hash (None if not found) if the chain
        holds exactly the journal's payload there; Mismatch if it holds anything else."""
        p = op.payload
        if op.kind in ("open", "close"):
            info = self.registry.round_info(op.run_id, op.round)
            if op.kind == "open":
                if info.state == "none":
                    return False
                ours = (p["global_hash"].lower(), p["circuit_id"].lower())
                theirs = (info.global_hash, info.circuit_id)
                event = "RoundOpened"
            else:
                if info.state != "closed":
                    return False
                ours, theirs, event = p["new_global_hash"].lower(), info.new_global_hash, "RoundClosed"
            if ours != theirs:
                raise Mismatch(f"the chain holds round {op.round} of run {op.run_id} {info.state} with {theirs}, the "
                               f"journal's {op.kind} says {ours}: not this run's operation, not adopted")
        else:
            stored = self.registry.record_hash(op.run_id, op.round, op.node)
            if stored is None:
                return False
            expected = _expected_record(op).hash()
            if stored != expected:
                raise Mismatch(f"the chain holds another record of {op.node} in run {op.run_id} round {op.round} "
                               f"(hash {stored}, the journal's {expected}): not adopted")
            event = "ContributionRecorded"
        filters = {"runId": op.run_id, "round": op.round}
        if event == "ContributionRecorded":
            filters["node"] = Web3.to_checksum_address(op.node)
        found = self.registry.events(event, **{k: _topic(v) for k, v in filters.items()})
        return found[-1]["tx_hash"] if found else None


def _topic(value):
    return bytes.fromhex(value[2:]) if isinstance(value, str) and len(value) == 66 else value


def _batchable(op: Op) -> bool:
    """Signed records without an on-chain proof, whose signer's approval the gate could check."""
    return op.kind == "record" and op.payload.get("proof") is None and not op.payload.get("approval_unchecked")


def _entry(p: dict) -> Entry:
    return Entry(Contribution.from_dict(p["contribution"]), bytes.fromhex(p["signature"][2:]), Status(p["status"]),
                 Reason(p["reason"]), p.get("score", 0.0), p.get("weight", 0.0))


def _proof(p: dict) -> EvmProof | None:
    if p.get("proof") is None:
        return None
    return EvmProof(bytes.fromhex(p["proof"]["proof"][2:]), [int(i) for i in p["proof"]["instances"]])


def _expected_record(op: Op) -> Record:
    """The record the chain would hold had this operation been sent (its hash is what it stores)."""
    p = op.payload
    node = Web3.to_checksum_address(op.node)
    if op.kind == "reject":
        return Record.rejection(op.run_id, op.round, node, p["reason"], p["evidence_hash"])
    e = _entry(p)
    return Record.signed_outcome(e.contribution, node, e.status, e.reason, e.score, e.weight,
                                 proof_verified=_proof(p) is not None)
