"""``zk0agg contributions``: the recorded contributions, read back from the registry's events."""

from __future__ import annotations

import argparse

from aggregator.cli.common import add_registry_flags, read_registry
from node.cliargs import add_command, at_least
from node.errors import UserError

_COLUMNS = ("run", "round", "node", "status", "reason", "signed", "proof on chain", "loss before → after", "score",
            "weight", "reward (ZK0)", "update hash", "tx")


def add_parser(sub: argparse._SubParsersAction) -> None:
    contrib = add_command(sub, "contributions", _contributions,
                          help="read the recorded contributions back from the chain")
    contrib.add_argument("--round", type=at_least(1), help="only this round")
    contrib.add_argument("--run", metavar="RUN_ID", help="only this run (its id on the registry, or a prefix of it: "
                         "summary.json's chain.run_id)")
    contrib.add_argument("--node", metavar="ADDRESS", help="only this node's records")
    add_registry_flags(contrib)


def _contributions(args: argparse.Namespace) -> int:
    from rich.console import Console

    from aggregator.outputs import print_table

    registry = read_registry(args)
    filters, runs = _event_filters(args, registry)
    events = registry.events("ContributionRecorded", **filters)  # records live in events; storage keeps hashes
    print_table(Console(), _table(registry, events, runs))  # uncut in a pipe too
    if not events:
        print("no contributions recorded" + (f" for round {args.round}" if args.round is not None else ""))
    return 0


def _event_filters(args: argparse.Namespace, registry) -> tuple[dict, list[str]]:
    """The event filters of ``--node``, ``--round`` and ``--run`` (a unique prefix), and the registry's runs."""
    from web3 import Web3

    filters: dict = {}
    if args.node:
        if not Web3.is_address(args.node):
            raise UserError(f"bad node address {args.node!r}")
        filters["node"] = Web3.to_checksum_address(args.node)
    if args.round is not None:
        filters["round"] = args.round
    runs = [r["run_id"] for r in registry.runs()]
    if args.run:
        matching = [r for r in runs if r.startswith(args.run.lower())]
        if len(matching) != 1:
            raise UserError(f"--run {args.run}: {'no' if not matching else 'more than one'} run of registry "
                            f"{registry.address} starts so; its runs: {', '.join(runs) or 'none'}")
        filters["runId"] = bytes.fromhex(matching[0][2:])
    return filters, runs


def _table(registry, events: list, runs: list[str]):
    from rich.table import Table

    table = Table(title=f"contributions in registry {registry.address} (chain {registry.chain_id}, "
                        f"{len(runs)} run(s))")
    for column in _COLUMNS:
        table.add_column(column)
    rounds_info: dict = {}
    for event in events:
        r = registry.record_of_event(event)
        losses = f"{r.loss_before:.4f} → {r.loss_after:.4f}" if r.signed else "-"
        table.add_row(r.run_id[:10] + "…", str(r.round), r.node, r.status.name, r.reason.name if r.reason.value else "",
                      "yes" if r.signed else "no", "yes" if r.proof_verified else "no", losses,
                      f"{r.score:+.4f}" if r.signed else "-", f"{r.weight:.1%}" if r.weight else "-",
                      _reward_cell(registry, r, rounds_info),
                      r.update_hash[:10] + "…", event["tx_hash"][:10] + "…")
    return table


def _reward_cell(registry, record, rounds_info: dict) -> str:
    """What a record earns: emission × weight / the round's weight total for a SELECTED record in a closed round;
    'pending' until claimed ('paid' after, or forfeited by a slash)."""
    from aggregator.ledger.incentives import tokens
    from contracts import Status, score_to_fixed
    from contracts.records import earned

    if record.status != Status.SELECTED or record.weight <= 0:
        return "-"
    key = (record.run_id, record.round)
    if key not in rounds_info:
        rounds_info[key] = registry.round_info(*key)
    info = rounds_info[key]
    if info.state != "closed":
        return "round open"
    units = earned(info.emission, int(record.chain[13]), score_to_fixed(info.weight_total))
    pending = registry.reward_of(record)
    return f"{tokens(units)} " + ("pending" if pending else "paid or slashed")
