"""``zk0agg verify-model``: which round produced a model (a release folder or a checkpoint), checked on chain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aggregator.cli.common import add_registry_flags, open_registry, start_state
from node.cliargs import add_command
from node.errors import UserError

_RECORD_COLUMNS = ("node", "status", "reason", "signed", "loss before → after", "update hash", "proof hash",
                   "record tx")


def add_parser(sub: argparse._SubParsersAction) -> None:
    verify_model = add_command(sub, "verify-model", _verify_model,
                               help="check on chain which round produced a model (a release "
                               "folder or a checkpoint); refuses a model no round produced")
    verify_model.add_argument("path", help="a release folder or checkpoint (config.json + model.safetensors)")
    add_registry_flags(verify_model)


def _verify_model(args: argparse.Namespace) -> int:
    """Recompute the model's hash, find the round that closed with it on chain; exit 1 if none did."""
    import json

    from aggregator.ledger.provenance import checkpoint_dir, find_provenance, initial_model_round, model_hash
    from aggregator.tools.release import PROVENANCE_FILE

    folder = checkpoint_dir(args.path)
    claimed = json.loads((folder / PROVENANCE_FILE).read_text()) if (folder / PROVENANCE_FILE).is_file() else {}
    rpc, registry_address = _chain(args, claimed)
    digest = model_hash(folder)
    registry = open_registry(rpc, registry_address)
    found = find_provenance(registry, digest)
    if found is None:
        started = initial_model_round(registry, digest)
        why = (f"it is the model round {started} started from, not one a round produced" if started else
               "no round of this registry closed with this model: it was changed, or it comes from elsewhere")
        print(f"zk0agg: refused: {folder} hashes to {digest}; {why} (registry {registry.address}, chain "
              f"{registry.chain_id})", file=sys.stderr)
        return 1
    _print_provenance(folder, digest, found)
    if claimed and (claimed.get("round"), claimed.get("close_round_tx")) != (found.round, found.close_tx):
        print(f"zk0agg: warning: {PROVENANCE_FILE} claims round {claimed.get('round')} / transaction "
              f"{claimed.get('close_round_tx')}; the chain says round {found.round} / {found.close_tx}",
              file=sys.stderr)
    return 0


def _chain(args: argparse.Namespace, claimed: dict) -> tuple[str, str]:
    """(RPC URL, registry): the flags, else zk0agg start's state, else (with a note) the registry the release
    itself names: a registry is only evidence when it is the federation's published one."""
    state = start_state(args)
    rpc = args.chain_rpc or state.get("chain_rpc")
    registry_address = args.registry or state.get("registry") or claimed.get("registry")
    if not rpc or not registry_address:
        raise UserError("which chain? give --chain-rpc URL and --registry ADDRESS (the federation's published "
                        "registry)")
    if not (args.registry or state.get("registry")):
        print(f"note: registry {registry_address} is the one the release itself names: check that it is the "
              "federation's published registry", file=sys.stderr)
    return rpc, registry_address


def _print_provenance(folder: Path, digest: str, found) -> None:
    """The round that closed with the model, and the records of the updates averaged into it."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold green]verified[/]: {folder} is the model round {found.round} closed with\n"
                  f"  model hash   {digest}\n"
                  f"  chain        {found.chain_id}, registry {found.registry}\n"
                  f"  run          {found.run_id}\n"
                  f"  round        {found.round}, started from {found.global_hash}, circuit {found.circuit_id}\n"
                  f"  openRound    {found.open_tx or '-'}\n"
                  f"  closeRound   {found.close_tx} (block {found.close_block})"
                  + (f"\n  kept unchanged by round(s) {', '.join(map(str, found.kept_by))} (no quorum)"
                     if found.kept_by else ""))
    table = Table(title=f"round {found.round}: {len(found.selected)} selected update(s) averaged into this model",
                  title_justify="left")
    for column in _RECORD_COLUMNS:
        table.add_column(column, no_wrap=column in ("node", "record tx"))
    for r in found.records:
        table.add_row(r.node, r.status, r.reason if r.reason != "NONE" else "", "yes" if r.signed else "no",
                      f"{r.loss_before:.4f} → {r.loss_after:.4f}" if r.signed else "-", r.update_hash[:10] + "…",
                      r.proof_hash[:10] + "…" if r.signed else "-", r.tx_hash or "-")
    console.print(table)
