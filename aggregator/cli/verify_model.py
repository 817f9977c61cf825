"""``zk0agg verify-model``: which round produced a model (a release folder or a checkpoint), checked on chain."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aggregator.cli.common import add_registry_flags, open_registry, start_state
from node.cliargs import add_command
from node.errors import UserError

_LABEL = 10  # key-value lines: 2 + 10 + 1 + a 66-character hash = 79 columns, readable in an 80-column terminal


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
    try:
        claimed = json.loads((folder / PROVENANCE_FILE).read_text()) if (folder / PROVENANCE_FILE).is_file() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {folder / PROVENANCE_FILE}: {err}") from None
    rpc, registry_address, source = _chain(args, claimed, folder)
    registry = open_registry(rpc, registry_address)
    _check_claimed_chain(claimed, registry, rpc, source, folder)
    print(f"checking against registry {registry.address} on chain {registry.chain_id} ({rpc}), from {source}",
          file=sys.stderr)
    digest = model_hash(folder)
    found = find_provenance(registry, digest)
    if found is None:
        started = initial_model_round(registry, digest)
        why = (f"it is the model round {started} started from, not one a round produced" if started else
               "no round of this registry closed with this model: it was changed, or it comes from elsewhere")
        print(f"zk0agg: refused: {folder} hashes to {digest}; {why} (registry {registry.address} from {source}, "
              f"chain {registry.chain_id})", file=sys.stderr)
        return 1
    _print_provenance(folder, digest, found, source)
    if claimed and (claimed.get("round"), claimed.get("close_round_tx")) != (found.round, found.close_tx):
        print(f"zk0agg: warning: {PROVENANCE_FILE} claims round {claimed.get('round')} / transaction "
              f"{claimed.get('close_round_tx')}; the chain says round {found.round} / {found.close_tx}",
              file=sys.stderr)
    return 0


def _chain(args: argparse.Namespace, claimed: dict, folder: Path) -> tuple[str, str, str]:
    """(RPC URL, registry, where the registry came from): the flags, else zk0agg start's state (--state-dir),
    else the registry the release itself names (said so: a registry is evidence only when it is the federation's
    published one). A registry other than the one the release names is refused: the model's provenance is on its
    own registry, and a default state dir may hold another federation's."""
    from aggregator.tools.release import PROVENANCE_FILE

    state_file = Path(args.state_dir) / "federation.json"
    state = start_state(args)
    rpc = args.chain_rpc or state.get("chain_rpc")
    if args.registry:
        registry_address, source = args.registry, "--registry"
    elif state.get("registry"):
        registry_address, source = state["registry"], f"zk0agg start's state {state_file}"
    else:
        registry_address, source = claimed.get("registry"), f"the release's own {PROVENANCE_FILE}"
    if not rpc or not registry_address:
        raise UserError("which chain? give --chain-rpc URL and --registry ADDRESS (the federation's published "
                        "registry)")
    named = claimed.get("registry")
    if named and str(named).lower() != str(registry_address).lower():
        raise UserError(f"{folder} was released from registry {named} on chain {claimed.get('chain_id')}, not "
                        f"registry {registry_address} (from {source}): give --chain-rpc and --registry of that one, if "
                        "it is the federation's published registry")
    if source.startswith("the release"):
        print(f"note: registry {registry_address} is the one the release itself names: check that it is the "
              "federation's published registry", file=sys.stderr)
    return rpc, registry_address, source


def _check_claimed_chain(claimed: dict, registry, rpc: str, source: str, folder: Path) -> None:
    """The release's own chain is the one the RPC serves (the same registry address exists on many chains)."""
    named = claimed.get("chain_id")
    if named is not None and int(named) != registry.chain_id:
        raise UserError(f"{folder} was released from chain {named}, but {rpc} is "
                        f"chain {registry.chain_id} (registry {registry.address} from {source}): give --chain-rpc of "
                        f"chain {named}")


def _line(label: str, value) -> str:
    return f"  {label:<{_LABEL}} {value}"


def _print_provenance(folder: Path, digest: str, found, source: str) -> None:
    """The round that closed with the model, and each record of the round, as key-value lines: every hash and
    address whole (they are what a reader compares), and no line wider than 80 columns but the folder's."""
    lines = [f"verified: the model round {found.round} closed with",
             _line("model", folder),
             _line("model hash", digest),
             _line("chain", found.chain_id),
             _line("registry", found.registry),
             _line("", f"(from {source})"),
             _line("run", found.run_id),
             _line("round", found.round),
             _line("from model", found.global_hash),
             _line("circuit", found.circuit_id),
             _line("openRound", found.open_tx or "-"),
             _line("closeRound", found.close_tx),
             _line("block", found.close_block)]
    if found.kept_by:
        lines.append(_line("kept by", f"round(s) {', '.join(map(str, found.kept_by))} (no quorum, unchanged)"))
    lines += ["", f"round {found.round}: {len(found.selected)} selected update(s) averaged into this model, "
              f"{len(found.records)} record(s)"]
    for r in found.records:
        lines += ["", f"  {r.node}  {r.status}" + (f" {r.reason}" if r.reason != "NONE" else "")]
        lines.append(_record("losses", f"{r.loss_before:.4f} → {r.loss_after:.4f} (signed)" if r.signed else
                             "- (unsigned reply: recorded under its Flower node's key)"))
        lines.append(_record("update", r.update_hash))
        if r.signed:
            lines.append(_record("proof", r.proof_hash))
        lines.append(_record("tx", r.tx_hash or "-"))
    print("\n".join(lines))


def _record(label: str, value) -> str:
    return f"    {label:<6} {value}"
