"""``zk0node stake|unstake``: put ETH at stake in the registry to be admitted, and take it back."""

from __future__ import annotations

import argparse

from node.cli.common import WEI, chain_flags, open_registry, stake_line, tx_text, unlock_text
from node.cliargs import add_command
from node.errors import UserError


def _stake(args: argparse.Namespace) -> int:
    from contracts import parse_amount

    try:
        amount = parse_amount(args.amount)
    except ValueError as err:
        raise UserError(f"bad stake amount: {err}") from None
    if amount == 0:
        raise UserError("stake a positive amount (in ETH, e.g. 1.5)")
    registry = open_registry(args, signing=True)
    receipt = registry.stake(amount)
    print(f"staked {amount / WEI:g} ETH ({tx_text(receipt)})\n{stake_line(registry, registry.sender.address)}")
    return 0


def _unstake(args: argparse.Namespace) -> int:
    registry = open_registry(args, signing=True)
    if args.withdraw:
        before = registry.stake_of(registry.sender.address).amount
        receipt = registry.withdraw_stake()
        print(f"withdrew {before / WEI:g} ETH ({tx_text(receipt)})")
        return 0
    receipt = registry.request_unstake()
    info = registry.stake_of(registry.sender.address)
    print(f"unstake requested ({tx_text(receipt)}): the wallet takes no part in rounds opened from now on; its "
          f"{info.amount / WEI:g} ETH stay slashable until {unlock_text(info.unlock_at)} (the unstake delay after "
          "its last record), then run zk0node unstake --withdraw")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    stake = add_command(sub, "stake", _stake, help="stake ETH in the registry: a federation with a min stake admits "
                        "only wallets that staked it (its owner may also have to approve you)")
    stake.add_argument("amount", metavar="ETH", help="amount to add to your stake, e.g. 1.5 (or 10wei)")
    chain_flags(stake)
    unstake = add_command(sub, "unstake", _unstake, help="ask for your stake back (you stop taking part; it stays "
                          "slashable for the registry's unstake delay), then --withdraw it")
    unstake.add_argument("--withdraw", action="store_true", help="withdraw the stake once the delay is over")
    chain_flags(unstake)
