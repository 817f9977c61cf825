"""``zk0agg``: the aggregator operator's command line.

``start`` runs the SuperLink (and optionally the verifier service) until stopped and writes the connection facts
to ``.zk0/aggregator/federation.json``, which ``run``, ``approve`` and ``contributions`` read for their defaults.
Keys never go on a command line: they come from a file (``--*-key-file``) or an environment variable.

Built as Flower's own CLI is: one module per command (group), each with ``add_parser(sub)``; ``app`` registers them
and runs the chosen one; ``common`` holds what several share.
"""

from aggregator.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
