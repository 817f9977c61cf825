"""Sends the journal to the registry: in order, with retries, exactly once.

The aggregator journals an operation, then calls ``flush`` (and a background thread keeps flushing while the
chain is away). Before sending, the sender asks the chain whether the operation already happened (a send whose
receipt was lost to a crash), so a retry never doubles a record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from aggregator.journal import Journal, Op
from contracts import ChainError, ChainUnavailable, Contribution, EvmProof, Reason, Registry, Status

log = logging.getLogger(__name__)

EVENT_OF = {"open": "RoundOpened", "close": "RoundClosed", "record": "ContributionRecorded",
            "reject": "ContributionRecorded"}


class ChainSync:
    """Journal → registry. ``on_done(op, tx_hash)`` is called once per operation that reaches the chain."""

    def __init__(self, registry: Registry, journal: Journal, on_done: Callable[[Op, str | None], None] | None = None,
                 retry_interval: float = 2.0) -> None:
        self.registry = registry
        self.journal = journal
        self.on_done = on_done
        self.retry_interval = retry_interval
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._judged: dict[int, Op] = {}  # held-out records the registry judged when sent (see _send)

    # ----------------------------------------------------------------- journalling
    def open_round(self, round_: int, global_hash: str, circuit_id: str) -> None:
        self.journal.add("open", round_, "", {"global_hash": global_hash, "circuit_id": circuit_id})

    def record(self, round_: int, node: str, contribution: Contribution, signature: bytes, status: Status,
               reason: Reason, node_id: int, proof: EvmProof | None = None, score: float = 0.0,
               approval_unchecked: bool = False) -> None:
        """A signed reply's outcome and its validation score; ``node`` is the signer the gate recovered.
        ``approval_unchecked``: the gate could not read the signer's approval (an outage): the registry decides
        when the record is sent (see ``_send``)."""
        payload = {"contribution": contribution.to_dict(), "signature": "0x" + bytes(signature).hex(),
                   "status": int(status), "reason": int(reason), "node_id": node_id, "score": float(score),
                   "approval_unchecked": approval_unchecked,
                   "proof": None if proof is None else {"proof": "0x" + proof.proof.hex(),
                                                        "instances": [str(i) for i in proof.instances]}}
        self.journal.add("record", round_, node.lower(), payload)

    def reject(self, round_: int, node: str, reason: Reason, evidence_hash: str, node_id: int) -> None:
        self.journal.add("reject", round_, node.lower(),
                         {"node": node, "reason": int(reason), "evidence_hash": evidence_hash, "node_id": node_id})

    def close_round(self, round_: int, new_global_hash: str) -> None:
        self.journal.add("close", round_, "", {"new_global_hash": new_global_hash})

    # ----------------------------------------------------------------- sending
    def flush(self) -> int:
        """Send what is pending, in order; stop at the first outage. Returns how many remain pending."""
        with self._flush_lock:
            for op in self.journal.pending():
                try:
                    tx_hash = self._already_done(op)
                    if tx_hash is False:
                        tx_hash = self._send(op)
                except ChainUnavailable as err:
                    self.last_error = str(err)
                    self.journal.note_attempt(op.id, str(err))
                    log.warning("chain unavailable, %d operation(s) wait in the journal: %s",
                                len(self.journal.pending()), err)
                    break
                except ChainError as err:  # the contract refused: permanent, keep it visible
                    self.journal.mark_failed(op.id, str(err))
                    log.error("chain refused %s round %d %s: %s", op.kind, op.round, op.node, err)
                    continue
                self.journal.mark_done(op.id, tx_hash)
                self.last_error = None
                if self.on_done is not None:
                    self.on_done(self._judged.pop(op.id, op), tx_hash)
            return len(self.journal.pending())

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
    def _send(self, op: Op) -> str:
        p = op.payload
        if op.kind == "open":
            receipt = self.registry.open_round(op.round, p["global_hash"], p["circuit_id"])
        elif op.kind == "close":
            receipt = self.registry.close_round(op.round, p["new_global_hash"])
        elif op.kind == "record" and p.get("approval_unchecked") and not self.registry.is_approved(op.node):
            # Held out during an outage, and the registry now says the signer is not approved: that is the verdict.
            verdict = ["REJECTED", "UNKNOWN_NODE", f"{op.node} is not approved (checked once the chain was back)"]
            self._judged[op.id] = replace(op, kind="reject", payload={**p, "verdict": verdict})
            receipt = self.registry.record_rejection(op.round, p["node_id"], Reason.UNKNOWN_NODE,
                                                     p["contribution"]["update_hash"])
        elif op.kind == "record":
            proof = None
            if p["proof"] is not None:
                proof = EvmProof(bytes.fromhex(p["proof"]["proof"][2:]), [int(i) for i in p["proof"]["instances"]])
            receipt = self.registry.record_contribution(Contribution.from_dict(p["contribution"]),
                                                        bytes.fromhex(p["signature"][2:]), Status(p["status"]),
                                                        Reason(p["reason"]), proof=proof,
                                                        score=p.get("score", 0.0))
        elif op.kind == "reject":
            receipt = self.registry.record_rejection(op.round, p["node_id"], Reason(p["reason"]), p["evidence_hash"])
        else:
            raise ChainError(f"unknown journal operation {op.kind!r}")
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def _already_done(self, op: Op) -> str | None | bool:
        """False if the operation is not on chain yet; else its transaction hash (None if not found)."""
        if op.kind in ("open", "close"):
            state = self.registry.round_info(op.round).state
            done = state != "none" if op.kind == "open" else state == "closed"
        else:
            done = self.registry.has_record(op.round, op.node)
        if not done:
            return False
        for event in self.registry.events(EVENT_OF[op.kind]):
            args = event["args"]
            if args.get("round") == op.round and (not op.node or args.get("node", "").lower() == op.node):
                return event["tx_hash"]
        return None
