"""``zk0agg approve``: the registry owner approves (or revokes) a node's wallet address."""

from __future__ import annotations

import argparse

from aggregator.cli.common import add_owner_key_flag, add_registry_flags, owner_registry
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    approve = add_command(sub, "approve", _approve, help="approve a node's wallet address in the registry (owner only)")
    approve.add_argument("address", help="the node's address (zk0node wallet show prints it)")
    approve.add_argument("--revoke", action="store_true", help="revoke instead (takes effect from the next round)")
    add_owner_key_flag(approve)
    add_registry_flags(approve)


def _approve(args: argparse.Namespace) -> int:
    from web3 import Web3

    if not Web3.is_address(args.address):
        raise UserError(f"bad node address {args.address!r}: expected 0x followed by 40 hex digits")
    registry = owner_registry(args)
    receipt = registry.revoke_node(args.address) if args.revoke else registry.approve_node(args.address)
    verb = "revoked" if args.revoke else "approved"
    print(f"{verb} {Web3.to_checksum_address(args.address)} in registry {registry.address} "
          f"(tx 0x{bytes(receipt['transactionHash']).hex()})")
    return 0
