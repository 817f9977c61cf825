"""The chain ledger: what must reach the registry is journalled first and sent exactly once, and what the chain
holds is read back (audits, provenance of a model, each wallet's stake, rewards and slashes).

Face: ``Journal`` and ``ChainSync`` (the write path), ``audit_run``, ``find_provenance``, ``wallet_incentives``.
Uses ``contracts`` only; nothing here knows how a round selects replies.
"""

from aggregator.ledger.audit import Audit, audit_run
from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.incentives import wallet_incentives
from aggregator.ledger.journal import Journal, JournalError, Op
from aggregator.ledger.provenance import Provenance, find_provenance

__all__ = ["Audit", "ChainSync", "Journal", "JournalError", "Op", "Provenance", "audit_run", "find_provenance",
           "wallet_incentives"]
