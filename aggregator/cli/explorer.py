"""``zk0agg explorer``: a read-only web page of the federation, read from the chain (no key needed)."""

from __future__ import annotations

import argparse
import sys

from aggregator.cli.common import add_state_flag, start_state
from node.cliargs import add_command
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    explorer = add_command(sub, "explorer", _explorer,
                           help="serve a read-only web page of the federation, read from the chain",
                           description="Serve the contribution explorer: rounds, replies, wallets and parameters "
                           "read from the registry's events and views; eval loss and success rate per round from "
                           "a run's outputs folder when given. It only reads: no key is needed.")
    explorer.add_argument("--rpc", "--chain-rpc", dest="rpc", metavar="URL",
                          help="Ethereum JSON-RPC endpoint (default: from zk0agg start)")
    explorer.add_argument("--registry", metavar="ADDRESS",
                          help="ContributionRegistry address (default: from zk0agg start)")
    explorer.add_argument("--outputs", metavar="DIR", help="a run's outputs folder (its summary.json: eval loss, "
                          "success rate, SRS digest)")
    explorer.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    explorer.add_argument("--port", type=int, default=8480, help="port to listen on (default 8480)")
    explorer.add_argument("--refresh", type=float, default=5.0,
                          help="seconds between the page's refreshes (default 5; 0 = off)")
    add_state_flag(explorer)


def _explorer(args: argparse.Namespace) -> int:
    """The contribution explorer: a read-only web page of the registry, until Ctrl-C."""
    from aggregator.explorer import ChainReader, ExplorerConfig, NotARegistry, serve
    from contracts import ChainUnavailable

    state = start_state(args)
    rpc, registry = args.rpc or state.get("chain_rpc"), args.registry or state.get("registry")
    if not rpc or not registry:
        raise UserError("which chain? give --rpc URL and --registry ADDRESS (or run zk0agg start with them)")
    config = ExplorerConfig(rpc_url=rpc, registry=registry, outputs=args.outputs or "", refresh=args.refresh)
    try:  # say at once what the pages would say; serve anyway: the chain may come (back) later
        ChainReader(config).registry()
    except (ChainUnavailable, NotARegistry) as err:
        print(f"zk0agg: warning: {err}", file=sys.stderr)
    print(f"zk0 explorer of registry {config.registry} on {rpc}: http://{args.host}:{args.port}/  (Ctrl-C stops it)",
          flush=True)
    serve(config, args.host, args.port)
    return 0
