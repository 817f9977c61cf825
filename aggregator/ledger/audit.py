"""Does the chain say what the run says? summary.json compared with the registry, round by round, record by record.

The chain is the federation's public record; summary.json is what the aggregator believes happened. After any
fault (an outage, a crash and ``--resume``, a second run on the same registry) the two must agree: every reply in
the summary has exactly its outcome on chain (nothing *lost*), and nothing on chain differs from the summary or
is not in it (nothing *wrong*). ``zk0agg audit`` and scripts/eval_faults.py print this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import Reason, Registry, Status

UNSIGNED = ("MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE")


@dataclass
class Audit:
    """What the comparison found: counts and one line per difference."""

    rounds: int = 0
    on_chain: int = 0  # records of the run's rounds found on chain
    wrong: list[str] = field(default_factory=list)  # on chain, but not what the summary says (or not in it)
    lost: list[str] = field(default_factory=list)  # in the summary, not on chain

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.lost


def expected(node: dict) -> tuple[Status, Reason]:
    """The (status, reason) the chain must hold for one of the summary's replies."""
    status, reason = node["status"], node["reason"] or "NONE"
    if status in ("SELECTED", "NOT_SELECTED"):
        return Status[status], Reason[reason]
    return Status.REJECTED, Reason[status]


def audit_run(summary: dict, registry: Registry) -> Audit:
    """Compare every round of ``summary`` (a run's summary.json) with ``registry``'s rounds and records."""
    audit, run = Audit(), summary["chain"]["run_id"]
    for entry in summary["rounds"]:
        r = entry["round"]
        audit.rounds += 1
        info = registry.round_info(run, r)
        if info.state != "closed" or info.global_hash != entry["global_hash"] or (
                entry.get("new_global_hash") and info.new_global_hash != entry["new_global_hash"]):
            audit.wrong.append(f"round {r}: chain has {info.state} {info.global_hash[:10]}… → "
                               f"{(info.new_global_hash or '')[:10]}…, summary {entry['global_hash'][:10]}… → "
                               f"{(entry.get('new_global_hash') or '')[:10]}…")
        records = {rec.node.lower(): rec for rec in registry.round_records(run, r)}
        audit.on_chain += len(records)
        for node in entry["nodes"]:
            key = (node.get("address") or "").lower()
            rec = records.pop(key, None)
            if rec is None:
                audit.lost.append(f"round {r}: node {node['node_id']} ({node['status']}) has no record on chain")
                continue
            if (rec.status, rec.reason) != expected(node):
                audit.wrong.append(f"round {r}: {key[:10]}… is {Status(rec.status).name}/{Reason(rec.reason).name} "
                                   f"on chain, {node['status']}/{node['reason']} in the summary")
            elif rec.signed and (rec.update_hash != node["update_hash"]
                                 or abs(rec.score - (node.get("score") or 0.0)) > 1e-9
                                 or abs(rec.weight - (node.get("weight") or 0.0)) > 1e-9):
                audit.wrong.append(f"round {r}: {key[:10]}…'s update hash, score or weight on chain is not the "
                                   "summary's")
        audit.wrong += [f"round {r}: {k[:10]}… is on chain ({Status(rec.status).name}) but not in the summary"
                        for k, rec in records.items()]
    return audit
