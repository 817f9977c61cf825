"""What the zk0 command lines share: one-line errors for bad flags, checked numbers, and a closed stdout survived.

Every numeric option is checked where it is parsed (``at_least``, ``fraction``), so ``--rounds -1`` is refused
before anything starts, with one line naming the flag, as any other user error is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: ...``), like the CLIs' own ``UserError`` messages; the usage
    is one ``--help`` away. Sub-commands get the same class (argparse passes it on to ``add_subparsers``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def at_least(minimum: float, kind: type = int) -> Callable[[str], float]:
    """An argparse ``type``: a number of ``kind`` that is at least ``minimum``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not value >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is below the minimum {minimum:g}")
        if kind is float and value == float("inf"):
            raise argparse.ArgumentTypeError("must be finite")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def fraction(text: str) -> float:
    """An argparse ``type``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 1-65535."""
    value = at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


def survive_closed_stdout(run: Callable[[], int]) -> int:
    """``run()``, flushing stdout inside; when the reader went away (``zk0node wallet show | head -1``) exit quietly
    instead of with a BrokenPipeError traceback (Python's documented recipe: point stdout at /dev/null)."""
    try:
        code = run()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def add_command(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int],
                **kwargs) -> argparse.ArgumentParser:
    """A sub-command that runs ``func(args)``: ``run_command`` calls whatever ``func`` the parsed command set."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=func)
    return parser


def add_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command group (``zk0node wallet new``): its own required sub-commands, named in ``<name>_command``."""
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True)


def command_parser(prog: str, description: str, verbose_help: str,
                   commands: Iterable[Callable[[argparse._SubParsersAction], None]]) -> Parser:
    """The top parser of a zk0 command line: ``-v/--verbose`` and one sub-command per ``commands`` entry (each
    registers its own parser, in the order ``--help`` lists them), as Flower's CLI registers its command modules."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in commands:
        add_parser(sub)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv``, run the chosen command's ``func(args)``; a user mistake, a wallet or a chain error is one
    line on stderr and exit 2, Ctrl-C exit 130 (the same for every zk0 command line)."""
    from node.errors import UserError
    from node.logs import setup_logging

    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from contracts import ChainError, WalletError

    try:
        return survive_closed_stdout(lambda: args.func(args))
    except (UserError, WalletError, ChainError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
