"""``zk0agg sync``: send what a stopped run's chain journal still holds, once its chain answers again.

A run journals every chain operation before sending it (``aggregator.ledger.journal``); what a stopped run did not
send (Ctrl-C, a chain outage at its end, a crash) waits there, and ``--resume`` would send it, but only by running
the rest of the run. ``sync`` sends it alone: the journal settled as a resume settles it (``ChainSync.settle``), the
same exactly-once sender, each transaction written into summary.json. The run folder is held meanwhile
(``claim_run_folder``): a run that is still going sends its own operations, and is not raced.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.journal import Journal
from aggregator.outputs import RunOutputs
from aggregator.run_folder import JOURNAL_FILE, claim_run_folder
from contracts import Registry, connect
from contracts.endpoints import redact_url
from node.errors import UserError

log = logging.getLogger(__name__)


def sync_run(out_dir: str | Path, rpc_url: str, aggregator_key: str, timeout: float = 120.0) -> dict[str, int]:
    """Send run ``out_dir``'s pending chain operations to the registry its summary names; returns the journal's
    counts after (``sent``, ``pending``, ``failed``, ``superseded``)."""
    out = Path(out_dir)
    with claim_run_folder(out, resume=True):
        outputs = RunOutputs.reopen(out)
        chain = outputs.summary.get("chain") or {}
        if not chain.get("run_id") or not (out / JOURNAL_FILE).exists():
            raise UserError(f"{out} holds no verified run (no chain run id or no {JOURNAL_FILE}): nothing to send")
        registry = Registry.at(connect(rpc_url), chain["registry"], aggregator_key)
        if registry.chain_id != chain["chain_id"]:
            raise UserError(f"{redact_url(rpc_url)} is chain {registry.chain_id}, the run recorded on chain "
                            f"{chain['chain_id']}")
        sync = ChainSync(registry, Journal(out / JOURNAL_FILE), chain["run_id"], on_done=outputs.on_chain)
        before = sync.journal.counts(chain["run_id"])
        sync.settle({r["round"]: r["new_global_hash"] for r in outputs.summary["rounds"]})
        left = sync.drain(timeout)
        counts = sync.journal.counts(chain["run_id"])
        sync.journal.close()
        chain.update(pending_operations=left, failed_operations=counts["failed"],
                     superseded_operations=counts["superseded"])
        outputs.flush()
        return {"sent": counts["done"] - before["done"], "pending": left, "failed": counts["failed"],
                "superseded": counts["superseded"]}
