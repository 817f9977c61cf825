"""The ``zk0node`` parser: each command module registers its own sub-commands, in the order ``--help`` lists them."""

from __future__ import annotations

import argparse

from node.cli import app_hash, dataset, rewards, stake, start, status, wallet
from node.cliargs import command_parser, run_command

COMMANDS = (wallet, dataset, app_hash, start, status, stake, rewards)


def build_parser() -> argparse.ArgumentParser:
    return command_parser("zk0node", "zk0 node: train the shared SO-100 policy on your own data, prove and sign what "
                          "you send.", "show the libraries' own logs", (c.add_parser for c in COMMANDS))


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
