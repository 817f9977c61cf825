"""``zk0node rewards|claim``: what the registry owes this wallet for its accepted rounds, and minting it."""

from __future__ import annotations

import argparse

from node.cli.common import WEI, chain_flags, open_registry, stake_line, tx_text, wallet_address
from node.cliargs import add_command
from node.errors import UserError


def _rewards(args: argparse.Namespace) -> int:
    from web3 import Web3

    if args.address and not Web3.is_address(args.address):
        raise UserError(f"bad address {args.address!r}: expected 0x followed by 40 hex digits")
    registry = open_registry(args, signing=False)
    address = Web3.to_checksum_address(args.address) if args.address else wallet_address(args)
    pending, records = registry.pending_rewards(address)
    print(f"{address} in registry {registry.address} (chain {registry.chain_id}):\n"
          f"  rewards pending {pending / WEI:,.4f} ZK0" + (f" from round(s) {_rounds_text(records)}"
                                                       f" (zk0node claim)" if records else "") + "\n"
          f"  rewards claimed {registry.reward_balance(address) / WEI:,.4f} ZK0 (token balance)\n"
          f"  {stake_line(registry, address)}")
    return 0


def _claim(args: argparse.Namespace) -> int:
    registry = open_registry(args, signing=True)
    address = registry.sender.address
    pending, records = registry.pending_rewards(address)
    if not records:
        raise UserError(f"{address} has no unpaid rewards in registry {registry.address} (zk0node rewards)")
    receipt = registry.claim(address, records)
    print(f"claimed {pending / WEI:,.4f} ZK0 for round(s) {_rounds_text(records)} ({tx_text(receipt)}); "
          f"balance {registry.reward_balance(address) / WEI:,.4f} ZK0")
    return 0


def _rounds_text(records) -> str:
    """'1, 2 of run 0xab12…; 1 of run 0xcd34…': the rounds of records, run by run."""
    runs: dict[str, list[int]] = {}
    for r in records:
        runs.setdefault(r.run_id, []).append(r.round)
    return "; ".join(f"{', '.join(map(str, rounds))} of run {run[:10]}…" for run, rounds in runs.items())


def add_parser(sub: argparse._SubParsersAction) -> None:
    rewards = add_command(sub, "rewards", _rewards, help="your rewards (pending and claimed) and stake, read from the "
                          "chain (no password needed)")
    rewards.add_argument("address", nargs="?", help="any wallet address (default: your keystore's)")
    chain_flags(rewards, signing=False)
    claim = add_command(sub, "claim", _claim, help="mint your pending reward tokens to your wallet (you pay the gas)")
    chain_flags(claim)
