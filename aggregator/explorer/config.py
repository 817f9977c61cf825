"""What the explorer reads: one chain, one registry on it, and optionally the run's outputs folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.errors import UserError


@dataclass
class ExplorerConfig:
    """Validated once, when the explorer starts: a bad flag is a clear error, not a broken page later.

    rpc_url : the chain's JSON-RPC endpoint (http:// or https://).
    registry : the ContributionRegistry's address.
    outputs : a run's outputs folder (its summary.json gives eval loss and success rate per round), or "".
    refresh : seconds between the page's polls (0: no auto refresh).
    timeout : seconds an RPC call may take before the chain counts as unreachable.
    """

    rpc_url: str
    registry: str
    outputs: str = ""
    refresh: float = 5.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        from web3 import Web3

        if not self.rpc_url.startswith(("http://", "https://")):
            raise UserError(f"bad --rpc {self.rpc_url!r}: expected an http:// or https:// JSON-RPC URL")
        if not Web3.is_address(self.registry):
            raise UserError(f"bad --registry {self.registry!r}: expected 0x followed by 40 hex digits")
        self.registry = Web3.to_checksum_address(self.registry)
        if self.outputs and not Path(self.outputs).is_dir():
            raise UserError(f"--outputs {self.outputs}: no such folder (give a run's outputs/<run-id> folder)")
        if self.refresh < 0 or self.timeout <= 0:
            raise UserError("--refresh must be 0 or more seconds, and the RPC timeout positive")
