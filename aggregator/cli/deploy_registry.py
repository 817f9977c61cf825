"""``zk0agg deploy-registry``: deploy the ContributionRegistry; its address on stdout, the rest on stderr."""

from __future__ import annotations

import argparse
import sys

from aggregator.cli.common import AGGREGATOR_KEY_ENV, OWNER_KEY_ENV, owner_key, read_key
from contracts.endpoints import redact_url
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    deploy = add_command(sub, "deploy-registry", _deploy_registry,
                         help="deploy the ContributionRegistry and print its address")
    deploy.add_argument("--chain-rpc", required=True, metavar="URL", help="Ethereum JSON-RPC endpoint")
    deploy.add_argument("--owner-key-file", metavar="FILE",
                        help=f"deployer = owner key (approves nodes; default: env {OWNER_KEY_ENV})")
    deploy.add_argument("--aggregator", metavar="ADDRESS",
                        help="the aggregator's address (default: from --aggregator-key-file / "
                        f"{AGGREGATOR_KEY_ENV})")
    deploy.add_argument("--aggregator-key-file", metavar="FILE", help="the aggregator's key, to derive its address")


def _deploy_registry(args: argparse.Namespace) -> int:
    from eth_account import Account
    from web3 import Web3

    from contracts import Registry, connect

    key = owner_key(args)
    if args.aggregator:
        if not Web3.is_address(args.aggregator):
            raise UserError(f"bad --aggregator address {args.aggregator!r}")
        aggregator = Web3.to_checksum_address(args.aggregator)
    else:
        aggregator = Account.from_key(read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")).address
    registry = Registry.deploy(connect(args.chain_rpc), key, aggregator)
    print(registry.address)
    print(f"registry deployed on chain {registry.chain_id} at {redact_url(args.chain_rpc)}: owner "
          f"{Account.from_key(key).address}, aggregator {aggregator}", file=sys.stderr)
    return 0
