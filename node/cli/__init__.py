"""``zk0node``: the node operator's command line (wallet, dataset check, start a SuperNode, stake and rewards).

One module per command or command group, registered by ``app.build_parser`` (the layout of Flower's ``flwr/cli``).
"""

from node.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
