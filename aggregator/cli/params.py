"""``zk0agg params show|set``: the federation's participation rules (min stake, emission, slashing, unstake
delay, approval) as the registry has them; the owner changes some."""

from __future__ import annotations

import argparse

from aggregator.cli.common import add_owner_key_flag, add_registry_flags, chain_of, open_registry, owner_key
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    params = sub.add_parser("params", help="the federation's participation rules: min stake, emission, slashing, "
                            "unstake delay, approval")
    params_sub = params.add_subparsers(dest="params_command", required=True)
    show = add_command(params_sub, "show", _params, help="print the rules as the registry has them")
    add_registry_flags(show)
    pset = add_command(params_sub, "set", _params, help="change some rules (owner only, within the registry's caps); "
                       "the others stay; they apply after the registry's delay (at once before any stake or round)")
    pset.add_argument("--min-stake", metavar="ETH", help="stake a wallet needs to take part (e.g. 1.5, or 10wei)")
    pset.add_argument("--emission", metavar="ZK0", help="reward tokens each round opened from now on shares out")
    pset.add_argument("--slash-bps", type=int, metavar="BPS", help="share of the stake a bad proof loses (basis "
                      "points: 5000 = 50 %%)")
    pset.add_argument("--bounty-bps", type=int, metavar="BPS", help="share of the slashed amount paid to the "
                      "slasher (basis points; the rest is burned)")
    pset.add_argument("--unstake-delay", type=int, metavar="SECONDS",
                      help="seconds after its exit request and its last record before a stake can leave (86400 = a "
                      "day; at most 30 days)")
    pset.add_argument("--approval", action=argparse.BooleanOptionalAction, default=None,
                      help="permissioned: the owner approves each wallet too (--no-approval: stake alone admits)")
    add_owner_key_flag(pset)
    add_registry_flags(pset)


def _params(args: argparse.Namespace) -> int:
    """Show the participation rules, or (owner) change some of them."""
    rpc, registry_address = chain_of(args)
    if args.params_command == "set":
        changes = _changes(args)
        registry = open_registry(rpc, registry_address, owner_key(args))
        try:
            receipt = registry.set_params(**changes)
        except ValueError as err:
            raise UserError(str(err)) from None
        _, effective_at = registry.pending_params()
        when = f"they apply from {_time(effective_at)}" if effective_at else "in force now (nothing staked, no round)"
        print(f"parameters changed (tx 0x{bytes(receipt['transactionHash']).hex()}): {when}")
    else:
        registry = open_registry(rpc, registry_address)
    _print_params(registry)
    return 0


def _changes(args: argparse.Namespace) -> dict:
    """The rules ``params set`` was given, amounts in wei; at least one."""
    changes = {k: v for k, v in (("min_stake", args.min_stake), ("emission_per_round", args.emission),
                                 ("slash_bps", args.slash_bps), ("bounty_bps", args.bounty_bps),
                                 ("unstake_delay", args.unstake_delay), ("approval_required", args.approval))
               if v is not None}  # fmt: skip
    if not changes:
        raise UserError("nothing to set: give at least one of --min-stake, --emission, --slash-bps, "
                        "--bounty-bps, --unstake-delay, --approval/--no-approval")
    for name in ("min_stake", "emission_per_round"):
        if name in changes:
            changes[name] = _amount(changes[name], "--" + name.replace("_", "-").replace("-per-round", ""))
    return changes


def _amount(text: str, flag: str) -> int:
    from contracts import parse_amount

    try:
        return parse_amount(text)
    except ValueError as err:
        raise UserError(f"bad {flag}: {err}") from None


def _time(timestamp: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rules(params) -> str:
    from dataclasses import asdict

    from aggregator.ledger.incentives import WEI

    p = asdict(params)
    return (f"  min stake          {p['min_stake'] / WEI:g} ETH ({p['min_stake']} wei)\n"
            f"  emission per round {p['emission_per_round'] / WEI:g} ZK0\n"
            f"  slash              {p['slash_bps'] / 100:g} % of the stake per bad proof, "
            f"{p['bounty_bps'] / 100:g} % of it to the slasher\n"
            f"  unstake delay      {p['unstake_delay']} s ({p['unstake_delay'] / 3600:g} h) after the exit request "
            "and the last record\n"
            f"  approval required  {'yes (permissioned)' if p['approval_required'] else 'no (stake alone admits)'}")


def _print_params(registry) -> None:
    print(f"participation rules of registry {registry.address} (chain {registry.chain_id}), in force now:\n"
          f"{_rules(registry.params())}")
    pending, effective_at = registry.pending_params()
    if pending is not None:
        print(f"scheduled by the owner, in force from {_time(effective_at)} (rounds opened from then on):\n"
              f"{_rules(pending)}")
    print(f"  (a change waits {registry.params_delay()} s before it applies; caps: slash 50 %, bounty 50 %, unstake "
          "delay 30 days)")
