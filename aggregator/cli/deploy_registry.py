"""``zk0agg deploy-registry``: deploy the ContributionRegistry; its address on stdout, the rest on stderr."""

from __future__ import annotations

import argparse
import sys

from aggregator.cli.common import AGGREGATOR_KEY_ENV, OWNER_KEY_ENV, owner_key, read_key
from contracts.endpoints import redact_url
from contracts.registry import DEFAULT_PARAMS_DELAY
from node.cliargs import add_command, at_least
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
    deploy.add_argument("--params-delay", type=at_least(0), default=DEFAULT_PARAMS_DELAY, metavar="SECONDS",
                        help="how long the owner's parameter changes wait before they apply, fixed for good (default "
                        f"{DEFAULT_PARAMS_DELAY}: a day's notice to every node)")


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
    registry = Registry.deploy(connect(args.chain_rpc), key, aggregator, params_delay=args.params_delay)
    print(registry.address)
    print(f"registry deployed on chain {registry.chain_id} at {redact_url(args.chain_rpc)}: owner "
          f"{Account.from_key(key).address}, aggregator {aggregator}; parameter changes wait {args.params_delay} s",
          file=sys.stderr)
    return 0
