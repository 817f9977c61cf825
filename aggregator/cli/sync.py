"""``zk0agg sync``: send a stopped run's journalled chain operations (``aggregator.tools.sync``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aggregator.cli.common import AGGREGATOR_KEY_ENV, add_state_flag, read_key, start_state
from node.cliargs import add_command, at_least
from node.errors import UserError

HELP = "send what a stopped run's chain journal still holds (after Ctrl-C or a chain outage)"
DESCRIPTION = ("A run journals every chain operation before it sends it; what a run stopped before sending waits in "
               "<out>/chain-journal.sqlite. This sends it to the registry the run's summary names, exactly once, and "
               "writes the transactions into its summary.json.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    sync = add_command(sub, "sync", _sync, help=HELP, description=DESCRIPTION)
    sync.add_argument("--out", required=True, metavar="DIR", help="the run's output folder")
    sync.add_argument("--chain-rpc", metavar="URL", help="Ethereum JSON-RPC endpoint (default: from zk0agg start)")
    sync.add_argument("--aggregator-key-file", metavar="FILE",
                      help=f"the registry's aggregator key (default: env {AGGREGATOR_KEY_ENV})")
    sync.add_argument("--timeout", type=at_least(1, float), default=120.0,
                      help="seconds to keep trying while the chain does not answer (default 120)")
    add_state_flag(sync)


def _sync(args: argparse.Namespace) -> int:
    from aggregator.tools.sync import sync_run

    rpc = args.chain_rpc or start_state(args).get("chain_rpc")
    if not rpc:
        raise UserError("which chain? give --chain-rpc URL (or run zk0agg start with it)")
    key = read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")
    result = sync_run(Path(args.out), rpc, key, args.timeout)
    print(f"{args.out}: {result['sent']} chain operation(s) sent, {result['pending']} still pending, "
          f"{result['failed']} failed, {result['superseded']} superseded (an attempt of a round the summary does not "
          "hold: never sent)")
    return 0 if not (result["pending"] or result["failed"]) else 1
