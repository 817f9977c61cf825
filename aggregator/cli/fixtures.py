"""``zk0agg fixtures``: offline node datasets and a held-out set, for a demo or a test federation."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cliargs import add_command, at_least
from node.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    fixtures = add_command(sub, "fixtures", _fixtures, help="build offline node datasets and a held-out set")
    fixtures.add_argument("--nodes", type=at_least(1), default=3, help="node datasets (default 3)")
    fixtures.add_argument("--out", required=True, metavar="DIR", help="folder for the datasets")
    fixtures.add_argument("--data", choices=["synthetic", "sim"], default="synthetic",
                          help="synthetic generator (default, seconds) or MuJoCo expert demonstrations (minutes)")
    fixtures.add_argument("--episodes", type=at_least(1), default=4, help="episodes per dataset (default 4)")
    fixtures.add_argument("--frames", type=at_least(2), default=30, help="frames per synthetic episode (default 30)")


def _fixtures(args: argparse.Namespace) -> int:
    from aggregator.tools.fixtures import sim_fixtures, synthetic_fixtures

    if args.nodes < 1:
        raise UserError("--nodes must be at least 1")
    out = Path(args.out).expanduser().resolve()  # absolute URIs: they are handed to commands run elsewhere
    fixtures = (synthetic_fixtures(out, args.nodes, args.episodes, args.frames) if args.data == "synthetic"
                else sim_fixtures(out, args.nodes, args.episodes))
    for i, uri in enumerate(fixtures.nodes):
        print(f"node {i}: {uri}")
    print(f"held-out: {fixtures.heldout}")
    print(f"validation: {fixtures.validation}")
    return 0
