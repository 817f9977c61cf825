"""``zk0agg slash``: submit the kept evidence of a bad proof; the signer's stake is slashed, the sender paid."""

from __future__ import annotations

import argparse
from pathlib import Path

from aggregator.cli.common import AGGREGATOR_KEY_ENV, add_registry_flags, open_registry, read_key, start_state
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    slash = add_command(sub, "slash", _slash,
                        help="submit the evidence of a bad proof (a run's evidence/ files): the signer's "
                        "stake is slashed, a bounty paid to the sender",
                        description="slashBadProof: the contract recovers the node's signature, checks the proof "
                        "is the one it signed and runs the circuit's verifier; only a proof that fails is "
                        "slashed, once. Anyone may send it; the sender gets the bounty.")
    slash.add_argument("--evidence", required=True, action="append", metavar="FILE|DIR",
                       help="an evidence file (<out>/evidence/round_<r>/<address>.json) or a folder of them "
                       "(repeatable)")
    slash.add_argument("--slasher-key-file", metavar="FILE",
                       help=f"the sending account's key (default: env {AGGREGATOR_KEY_ENV})")
    add_registry_flags(slash)


def _slash(args: argparse.Namespace) -> int:
    """Submit kept evidence of a bad proof to slashBadProof (anyone may: the contract checks everything)."""
    from aggregator.ledger.incentives import evidence_files, read_evidence, slash, tokens

    paths = [Path(p) for p in args.evidence]
    files = [f for p in paths for f in (evidence_files(p) if p.is_dir() else [p])]
    if not files:
        raise UserError(f"no evidence files in {', '.join(map(str, paths))} (a run keeps them in <out>/evidence)")
    evidence = [read_evidence(f) for f in files]
    state = start_state(args)
    rpc = args.chain_rpc or state.get("chain_rpc")
    if not rpc:
        raise UserError("which chain? give --chain-rpc URL (or run zk0agg start with it)")
    key = read_key(args.slasher_key_file, AGGREGATOR_KEY_ENV, "slasher")
    for item in evidence:
        registry = open_registry(rpc, args.registry or item.registry, key)
        result = slash(registry, item)
        print(f"slashed {result['node']} for its bad proof of round {result['round']}: {tokens(result['amount'])} ETH "
              f"of its stake, bounty {tokens(result['bounty'])} ETH to {registry.sender.address} "
              f"(tx {result['tx_hash']}, gas {result['gas']})")
    return 0
