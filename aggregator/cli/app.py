"""The ``zk0agg`` app: the top parser, each command module's parser registered in ``--help`` order, and the two
commands (``chain up``, ``verifier serve``) whose parsers live with their code and get the rest of the line."""

from __future__ import annotations

import argparse
import sys

from aggregator.cli import (
    approve,
    contributions,
    demo,
    deploy_registry,
    explorer,
    fixtures,
    params,
    register_circuit,
    release,
    run,
    slash,
    start,
    status,
    sync,
    verify_model,
)
from node.cliargs import command_parser, run_command


def build_parser() -> argparse.ArgumentParser:
    return command_parser("zk0agg", "zk0 aggregator: run and inspect a verifiable federation of SO-100 robot "
                          "policies.", "show Flower's and LeRobot's own logs", _COMMANDS)


def _add_chain(sub: argparse._SubParsersAction) -> None:
    """A placeholder for ``--help`` and a bare ``chain``: :func:`_delegated` runs ``chain up``'s own parser."""
    chain = sub.add_parser("chain", help="a local development chain (anvil)")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True)
    chain_sub.add_parser("up", help="run anvil until Ctrl-C (zk0agg chain up --help for its flags)")
    chain_sub.add_parser("fund", help="give an address ETH on the dev chain (zk0agg chain fund --help)")


def _add_verifier(sub: argparse._SubParsersAction) -> None:
    """A placeholder for ``--help`` and a bare ``verifier``: :func:`_delegated` runs ``verifier serve``'s own."""
    verifier = sub.add_parser("verifier", help="the stateless proof verification service")
    verifier_sub = verifier.add_subparsers(dest="verifier_command", required=True)
    verifier_sub.add_parser("serve", help="serve POST /v1/verify (zk0agg verifier serve --help for its flags)")


# every command's parser, in the order ``zk0agg --help`` lists them
_COMMANDS = (demo.add_parser, start.add_parser, run.add_parser, approve.add_parser, contributions.add_parser,
             register_circuit.add_parser, params.add_parser, slash.add_parser, explorer.add_parser, _add_chain,
             _add_verifier, fixtures.add_parser, deploy_registry.add_parser, status.add_parser, sync.add_parser,
             release.add_parser, verify_model.add_parser)


def _delegated(argv: list[str]) -> int | None:
    """``chain up`` and ``verifier serve`` have parsers of their own: hand them the rest of the line."""
    if argv[:2] == ["chain", "up"]:
        from contracts.local_chain import main as chain_main

        return chain_main(argv[2:])
    if argv[:2] == ["chain", "fund"]:
        from contracts.local_chain import fund_main

        return fund_main(argv[2:])
    if argv[:2] == ["verifier", "serve"]:
        from aggregator.verifier.service import serve_main

        return serve_main(argv[2:])
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = _delegated(argv)
    if delegated is not None:
        return delegated
    return run_command(build_parser(), argv)
