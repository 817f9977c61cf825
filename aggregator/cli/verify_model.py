"""``zk0agg verify-model``: which round produced a released model, checked on chain, every byte of it.

The chain records the trainable arrays' hash only; the rest of the model (frozen vision encoder, processors and
their statistics, config.json, card) is held to the manifest the aggregator that opened the run signed at release
(``aggregator.ledger.provenance``, N7 of issue 30)."""

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
                               help="check on chain which round produced a released model, and every byte of the "
                               "release against its signed manifest; refuses a model no round produced")
    verify_model.add_argument("path", help="a release folder (zk0agg release: checkpoint, card, signed manifest)")
    add_registry_flags(verify_model)


def _verify_model(args: argparse.Namespace) -> int:
    """Check every file against the signed manifest, the signer and the claims against the chain, and find the round
    that closed with the model; exit 1 (one line: what differs) if any of it fails."""
    from aggregator.ledger.provenance import Refused, checkpoint_dir

    folder = checkpoint_dir(args.path)
    try:
        found, signer, files, source = _check_release(args, folder)
    except Refused as err:
        print(f"zk0agg: refused: {err}", file=sys.stderr)
        return 1
    _print_provenance(folder, found.model_hash, found, source, signer, files)
    return 0


def _check_release(args: argparse.Namespace, folder: Path) -> tuple:
    """(the round that produced the model, the manifest's signer, how many files, where the registry came from);
    raises Refused."""
    from aggregator.ledger.provenance import (
        MANIFEST_FILE,
        Refused,
        find_provenance,
        initial_model_round,
        model_hash,
        run_aggregator,
    )

    manifest, claimed, signer = _signed_release(folder)
    rpc, registry_address, source = _chain(args, claimed, folder)
    registry = open_registry(rpc, registry_address)
    _check_claimed_chain(claimed, registry, rpc, source, folder)
    print(f"checking against registry {registry.address} on chain {registry.chain_id} ({rpc}), from {source}",
          file=sys.stderr)
    where = f"(registry {registry.address} from {source}, chain {registry.chain_id})"
    run_id = str(claimed.get("chain_run_id"))
    opener = run_aggregator(registry, run_id)
    if opener is None:
        raise Refused(f"{folder} names run {run_id}, which this registry never opened {where}")
    if opener.lower() != signer.lower():
        raise Refused(f"{folder / MANIFEST_FILE} is signed by {signer}, not by {opener}, the aggregator that opened "
                      f"run {run_id} {where}")
    digest = model_hash(folder)
    if digest != manifest.get("model_hash"):
        raise Refused(f"{folder} hashes to {digest}, not to the model hash {manifest.get('model_hash')} its "
                      f"{MANIFEST_FILE} was signed with")
    found = find_provenance(registry, digest)
    if found is None:
        started = initial_model_round(registry, digest)
        why = (f"it is the model round {started} started from, not one a round produced" if started else
               "no round of this registry closed with this model: it was changed, or it comes from elsewhere")
        raise Refused(f"{folder} hashes to {digest}; {why} {where}")
    _check_claims(folder, claimed, digest, registry, run_id)
    return found, signer, len(manifest["files"]), source


def _signed_release(folder: Path) -> tuple[dict, dict, str]:
    """(manifest, the release's provenance, the manifest's signer), offline: every file as the manifest lists it,
    and the manifest as its signer signed it."""
    import json

    from aggregator.ledger.provenance import Refused, check_files, manifest_signer, read_manifest
    from aggregator.tools.release import PROVENANCE_FILE

    manifest = read_manifest(folder)
    check_files(folder, manifest)
    try:
        claimed = json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise Refused(f"cannot read {folder / PROVENANCE_FILE}: {err}") from None
    if not isinstance(claimed, dict):
        raise Refused(f"{folder / PROVENANCE_FILE} is not a release's provenance")
    return manifest, claimed, manifest_signer(manifest)


def _check_claims(folder: Path, claimed: dict, digest: str, registry, run_id: str) -> None:
    """The release's provenance as the chain records its round, and the card stating it."""
    from aggregator.ledger.provenance import Refused, card_omission, claim_mismatch, round_facts
    from aggregator.tools.release import PROVENANCE_FILE

    round_ = claimed.get("round")
    if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
        raise Refused(f"{folder / PROVENANCE_FILE} names no round ({round_!r})")
    mismatch = claim_mismatch(claimed, digest, round_facts(registry, run_id, round_))
    if mismatch:
        raise Refused(f"{folder / PROVENANCE_FILE}: {mismatch}")
    card = folder / "README.md"
    missing = card_omission(card.read_text() if card.is_file() else "", claimed)
    if missing:
        raise Refused(f"{card} does not state {missing}, which {PROVENANCE_FILE} claims: it is not this release's "
                      "card")


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


def _print_provenance(folder: Path, digest: str, found, source: str, signer: str, files: int) -> None:
    """The round that closed with the model, and each record of the round, as key-value lines: every hash and
    address whole (they are what a reader compares), and no line wider than 80 columns but the folder's."""
    lines = [f"verified: the model round {found.round} closed with",
             _line("model", folder),
             _line("model hash", digest),
             _line("files", f"{files}, every byte as the run's aggregator signed them"),
             _line("signed by", signer),
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
