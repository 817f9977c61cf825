"""The verified protocol's server side: the circuit, the chain, and what each round opens, checks and records.

``Verification`` is what turns the plain Krum federation into zk0's: at round open it tells nodes the terms
(run id, circuit id, chain id, registry) and journals ``openRound``; the gate uses its approved-node lookup and
proof checker; after Krum it journals every reply's outcome, held; once the round is committed in summary.json it
journals ``closeRound`` and releases the round's outcomes to the chain (``commit``). The chain is reached only
through the journal (``ChainSync``), so an outage delays records and loses none, and a killed attempt of a round
never reaches it (``resume``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord
from web3 import Web3

from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.journal import Journal
from aggregator.protocol.gate import Reply, RoundContext
from contracts import ChainError, ChainUnavailable, EvmProof, Reason, Registry, Status, connect
from node.contribution import circuit_key, slice_of, slice_reader, slice_shape
from prover import ProofArtifact, Verdict, build_circuit, load_verifier, verify

log = logging.getLogger(__name__)

UNSIGNED = ("MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE")


def reply_address(node_id: int) -> str:
    """The on-chain key of a reply that is not attributable to a wallet (rejected before its signature held).

    Derived from the Flower node id, so such a record can never take the (round, wallet) slot of the wallet it
    claims: an attacker cannot block an honest node's record by replaying or forging in its name.
    """
    digest = hashlib.sha256(b"zk0:flower-node:" + str(node_id).encode()).digest()
    return Web3.to_checksum_address(digest[-20:])


def federation_srs(srs: str):
    """``"dev"`` or an SRS file (the public ceremony file in production; its header says its size)."""
    if srs == "dev":
        return "dev"
    from prover import load_srs
    from prover.srs import srs_file_logrows  # the file declares its size in its first bytes

    return load_srs(srs, srs_file_logrows(srs) if Path(srs).is_file() else 0)


class LocalProofChecker:
    """In-process verification: ``prover.verify`` with the circuit's verifier files."""

    def __init__(self, circuit) -> None:
        self.verifier = load_verifier(circuit)

    def verify(self, artifact: bytes, W_g, b_g, W_n, b_n) -> Verdict:  # noqa: N803
        return verify(artifact, self.verifier, W_g, b_g, W_n, b_n)


@dataclass
class ChainConfig:
    rpc_url: str
    registry: str
    aggregator_key: str  # hex private key of the registry's aggregator account
    onchain_verify: bool = False  # also verify each signed reply's proof in the contract


def registry_circuit_id(circuit) -> str:
    """``circuit``'s id on the registry (``circuitIdOf`` its verifying key, the pinned verifier code and its proofs'
    length): what the run's rounds name and its nodes, deriving it themselves, sign."""
    from prover.evm import sample_proof_length

    return circuit_key(circuit, sample_proof_length(circuit))


@dataclass
class Verification:
    """Circuit + chain for a verified run (built once at start)."""

    circuit: object
    checker: object
    registry: Registry
    sync: ChainSync
    run_id: str  # the run on the registry: rounds and records are keyed by it, nodes sign it
    onchain_verify: bool = False
    chain_id: int = 0  # read once at start: the round config must not need the chain to be up
    circuit_registered: bool = False  # the registry can judge this circuit's proofs (on-chain verify, slashing)
    circuit_key: str = ""  # the circuit's id on the registry (circuitIdOf its verifying key): rounds name it
    evidence_dir: Path | None = None  # where BAD_PROOF replies are kept, for zk0agg slash
    read_slice: Callable[[dict], tuple] = slice_of  # a model → the statement's (W, b): contribution.slice_reader
    _approved: dict[str, bool] = field(default_factory=dict)
    _fresh: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, policy, slice_rows: int, srs: str, cache_dir: str, chain: ChainConfig, journal_path: Path,
              run_id: str, on_done=None, checker=None, evidence_dir: Path | None = None) -> Verification:
        circuit = build_circuit(slice_shape(policy, slice_rows), federation_srs(srs), cache_dir)
        if circuit.srs.kind == "dev":
            log.warning("this run uses a DEVELOPMENT SRS (%s): whoever made it can forge proofs; never use it where "
                        "proofs must mean anything", circuit.srs.path)
        else:
            log.info("SRS %s (sha256 %s): nodes must use the same file", circuit.srs.path, circuit.srs.sha256)
        registry = Registry.at(connect(chain.rpc_url), chain.registry, chain.aggregator_key)
        key = registry_circuit_id(circuit)
        registered = registry.circuit(key).registered
        if chain.onchain_verify and not registered:
            raise ChainError(f"on-chain verification needs circuit {circuit.circuit_id} registered in registry "
                             f"{registry.address} (as {key}): run zk0agg register-circuit first")
        if not registered:
            log.warning("circuit %s is not registered in registry %s: its bad proofs cannot be slashed (run zk0agg "
                        "register-circuit)", circuit.circuit_id, registry.address)
        sync = ChainSync(registry, Journal(journal_path), run_id, on_done=on_done)
        run = cls(circuit, checker or LocalProofChecker(circuit), registry, sync, run_id, chain.onchain_verify,
                  registry.chain_id, registered, key, evidence_dir, slice_reader(policy))
        run.load_approvals()
        return run

    def resume(self, committed: dict[int, str]) -> dict[str, int]:
        """Before the first round of a (resumed) run: ``committed`` maps the rounds summary.json holds to their new
        global hashes. Their held outcomes are released and their closeRound journalled if a crash came first;
        held outcomes of any other round (a killed attempt) are superseded, never sent. Starts the sender."""
        result = self.sync.settle(committed)
        if result["superseded"]:
            log.warning("resume: %d outcome(s) of a killed attempt superseded (kept in %s, never sent)",
                        result["superseded"], self.sync.journal.path)
        others = len(self.sync.journal.pending()) - len(self.sync.journal.pending(self.run_id))
        if others:
            log.warning("%s holds %d pending operation(s) of another run: not sent by this one",
                        self.sync.journal.path, others)
        self.sync.start()
        return result

    # ----------------------------------------------------------------- round steps
    def open(self, round_: int, global_arrays: dict[str, np.ndarray], global_hash: str,
             config: ConfigRecord) -> RoundContext:
        """Round terms into the config every node receives; ``openRound`` into the journal."""
        config["run-id"] = self.run_id
        config["circuit-id"] = self.circuit.circuit_id
        config["circuit-key"] = self.circuit_key
        config["chain-id"] = self.chain_id
        config["registry"] = self.registry.address
        config["slice-rows"] = self.circuit.shape.rows
        config["srs-logrows"] = self.circuit.srs.logrows
        self._fresh.clear()  # re-ask the chain this round (a revocation takes effect at the next round)
        self.sync.open_round(round_, global_hash, self.circuit_key)
        self.sync.flush()
        return RoundContext(round_, global_arrays, global_hash, chain_id=self.chain_id,
                            registry=self.registry.address, run_id=self.run_id, circuit_key=self.circuit_key,
                            is_approved=self.is_approved, verifier=self.checker, read_slice=self.read_slice)

    def is_approved(self, address: str) -> bool | None:
        """Approval as the registry says, asked once a round; while the chain is away, the last known answer, and
        None for a wallet never seen (no verdict: the gate holds the reply out and the chain decides later)."""
        if address not in self._fresh:
            try:
                self._approved[address] = self.registry.is_approved(address)
                self._fresh.add(address)
            except ChainUnavailable:
                log.warning("chain unavailable: using the last known approval of %s (%s)", address,
                            self._approved.get(address, "never seen: held out, the chain decides when it is back"))
        return self._approved.get(address)

    def load_approvals(self) -> None:
        """Every wallet the registry approved (or that staked), read when the run starts, so a chain outage later
        never makes an approved node a stranger."""
        try:
            wallets = {e["args"]["node"] for e in self.registry.events("NodeApproved")}
            wallets |= {e["args"]["node"] for e in self.registry.events("Staked")}
            self._approved.update({w: self.registry.is_approved(w) for w in wallets})
        except ChainUnavailable as err:
            log.warning("chain unavailable at start (%s): approvals will be read when it is back", err)

    def record(self, round_: int, outcomes, replies: dict[int, Reply]) -> None:
        """Journal every reply's outcome, held until ``commit``: signed ones with the node's signature, the rest as
        rejections."""
        for outcome in outcomes:
            reply = replies[outcome.node_id]
            reason = outcome.reason or "NONE"
            if outcome.status in UNSIGNED:
                outcome.address = reply_address(outcome.node_id)
                evidence = reply.update_hash or "0x" + "00" * 32
                self.sync.reject(round_, outcome.address, Reason[reason], evidence, outcome.node_id)
                continue
            if outcome.status == "BAD_PROOF":
                self.keep_evidence(round_, reply)
            status = Status[outcome.status] if outcome.status in ("SELECTED", "NOT_SELECTED") else Status.REJECTED
            proof = None
            if self.onchain_verify:
                proof = EvmProof.from_ezkl(ProofArtifact.from_bytes(reply.proof).ezkl_proof())
            self.sync.record(round_, reply.address, reply.contribution, reply.signature, status, Reason[reason],
                             outcome.node_id, proof=proof, score=outcome.score or 0.0, weight=outcome.weight,
                             approval_unchecked=reply.approval_unchecked)

    def keep_evidence(self, round_: int, reply: Reply) -> Path | None:
        """Write a signed reply whose proof failed to ``<evidence>/round_<r>/<address>.json``: what
        ``slashBadProof`` needs (the signed contribution, its signature, the EVM proof bytes), for zk0agg slash."""
        if self.evidence_dir is None:
            return None
        try:
            proof = EvmProof.from_ezkl(ProofArtifact.from_bytes(reply.proof).ezkl_proof()).proof
        except ValueError as err:  # not a proof artifact at all: nothing the chain could check
            log.warning("round %d: no slashing evidence for %s: %s", round_, reply.address, err)
            return None
        path = self.evidence_dir / f"round_{round_}" / f"{reply.address}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(evidence_record(self.chain_id, self.registry.address, reply.address,
                                                   reply.contribution, reply.signature, proof), indent=1))
        return path

    def commit(self, round_: int, new_global_hash: str) -> None:
        """Round ``round_`` is in summary.json (checkpoint written first): release its outcomes, close it."""
        self.sync.release(round_)
        self.sync.close_round(round_, new_global_hash)
        self.sync.flush()

    def finish(self, timeout: float) -> dict[str, int]:
        """Wait up to ``timeout`` s for the journal to reach the chain; returns this run's operations that are
        still pending and those that failed (refused by the contract, or the chain holds something else)."""
        left = self.sync.drain(timeout)
        self.sync.stop()
        counts = self.sync.journal.counts(self.run_id)
        if left:
            log.error("%d chain operation(s) still pending in %s: they will be sent when the aggregator restarts",
                      left, self.sync.journal.path)
        if counts["failed"]:
            log.error("%d chain operation(s) FAILED (see last_error in %s): the chain does not hold them",
                      counts["failed"], self.sync.journal.path)
        return {"pending_operations": left, "failed_operations": counts["failed"],
                "superseded_operations": counts["superseded"]}


def evidence_record(chain_id: int, registry: str, signer: str, contribution, signature: bytes, proof: bytes) -> dict:
    """A BAD_PROOF reply as JSON: ``aggregator.ledger.incentives.read_evidence`` reads it back for slashBadProof."""
    from dataclasses import asdict

    return {"kind": "zk0-bad-proof-evidence", "chain_id": chain_id, "registry": registry, "signer": signer,
            "contribution": asdict(contribution), "signature": "0x" + bytes(signature).hex(),
            "proof": "0x" + bytes(proof).hex()}
