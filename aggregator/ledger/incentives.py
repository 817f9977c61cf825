"""The federation's incentives as the aggregator's operator sees them: slashing evidence, and each wallet's
stake, rewards and slashes read from the registry.

The aggregator keeps every BAD_PROOF reply it received (``Verification.keep_evidence``): the node's signed
contribution, its signature and the proof bytes. ``slash`` submits one to ``slashBadProof``: the contract itself
recovers the signer, checks the proof is the signed one and runs the verifier, so nobody has to trust the
aggregator's word that the proof was bad.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from contracts import ChainError, Contribution, Registry
from node.errors import UserError

log = logging.getLogger(__name__)

EVIDENCE_KIND = "zk0-bad-proof-evidence"
WEI = 10**18


@dataclass(frozen=True)
class Evidence:
    """A signed contribution whose proof failed the gate, as kept on disk."""

    path: Path
    chain_id: int
    registry: str
    signer: str
    contribution: Contribution
    signature: bytes
    proof: bytes


def read_evidence(path: str | Path) -> Evidence:
    """An evidence file (``<run>/evidence/round_<r>/<address>.json``); UserError saying what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"cannot read evidence file {path}: {err.strerror}") from None
    except ValueError:
        raise UserError(f"{path} is not JSON: expected a run's evidence/round_<r>/<address>.json") from None
    if not isinstance(data, dict) or data.get("kind") != EVIDENCE_KIND:
        raise UserError(f"{path} is not slashing evidence (kind {EVIDENCE_KIND!r}): expected a run's "
                        "evidence/round_<r>/<address>.json")
    try:
        return Evidence(path, int(data["chain_id"]), data["registry"], data["signer"],
                        Contribution(**data["contribution"]), bytes.fromhex(data["signature"].removeprefix("0x")),
                        bytes.fromhex(data["proof"].removeprefix("0x")))  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} is damaged evidence ({err}): take it from the run's evidence folder again") from None


def evidence_files(folder: str | Path) -> list[Path]:
    """Every evidence file under a run's ``evidence/`` folder, round by round."""
    return sorted(Path(folder).glob("round_*/*.json"), key=lambda p: (int(p.parent.name.split("_")[1]), p.name))


def slash(registry: Registry, evidence: Evidence) -> dict:
    """Submit ``evidence`` to ``slashBadProof`` from ``registry``'s sender; the Slashed event's values."""
    if evidence.chain_id != registry.chain_id or evidence.registry.lower() != registry.address.lower():
        raise UserError(f"{evidence.path} is evidence for registry {evidence.registry} on chain {evidence.chain_id}, "
                        f"not {registry.address} on chain {registry.chain_id}: its signature holds only there")
    receipt = registry.slash_bad_proof(evidence.contribution, evidence.signature, evidence.proof)
    event = registry.contract.events.Slashed().process_receipt(receipt)[0]["args"]
    return {"node": event["node"], "run_id": "0x" + bytes(event["runId"]).hex(), "round": event["round"],
            "amount": event["amount"], "bounty": event["bounty"],
            "tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(), "gas": receipt["gasUsed"]}


def slash_all(registry: Registry, folder: str | Path) -> list[dict]:
    """Slash every piece of evidence in ``folder``; one already slashed is reported, not an error."""
    results = []
    for path in evidence_files(folder):
        evidence = read_evidence(path)
        try:
            results.append({"evidence": str(path), **slash(registry, evidence)})
        except ChainError as err:
            if err.error_name != "AlreadySlashed":
                raise
            results.append({"evidence": str(path), "node": evidence.signer, "round": evidence.contribution.round,
                            "run_id": evidence.contribution.run_id, "already_slashed": True})
    return results


def wallet_incentives(registry: Registry, addresses: list[str]) -> dict[str, dict]:
    """Per wallet, read from the chain: stake (wei), pending and claimed rewards (token units), slashes."""
    slashes: dict[str, list[dict]] = {}
    for event in registry.events("Slashed"):
        slashes.setdefault(event["args"]["node"].lower(), []).append(event["args"])
    out = {}
    for address in addresses:
        stake = registry.stake_of(address)
        pending, records = registry.pending_rewards(address)
        mine = slashes.get(address.lower(), [])
        out[address] = {"stake_wei": stake.amount, "exiting": stake.exiting, "approved": registry.is_approved(address),
                        "rewards_pending": pending, "reward_rounds": [r.round for r in records],
                        "reward_runs": [r.run_id for r in records],
                        "rewards_claimed": registry.reward_balance(address),
                        "slashes": len(mine), "slashed_wei": sum(e["amount"] for e in mine),
                        "slashed_rounds": [e["round"] for e in mine]}  # fmt: skip
    return out


def tokens(units: int) -> str:
    """Token or ETH amount (18 decimals) for people: 4 decimals."""
    return f"{units / WEI:,.4f}"


def incentives_table(incentives: dict[str, dict], title: str):
    """A rich table of ``wallet_incentives``."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("wallet", "stake (ETH)", "rewards pending (ZK0)", "rewards claimed (ZK0)", "slashes",
                   "slashed (ETH)"):
        table.add_column(column)
    for address, w in incentives.items():
        table.add_row(address, tokens(w["stake_wei"]) + (" (exiting)" if w["exiting"] else ""),
                      tokens(w["rewards_pending"]), tokens(w["rewards_claimed"]),
                      f"{w['slashes']} (round {', '.join(map(str, w['slashed_rounds']))})" if w["slashes"] else "0",
                      tokens(w["slashed_wei"]))  # fmt: skip
    return table
