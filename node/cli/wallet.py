"""``zk0node wallet new|show``: the node's Ethereum identity, an encrypted keystore."""

from __future__ import annotations

import argparse

from node.cliargs import add_command, add_group


def _wallet_new(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_new

    print(wallet_new(args.out, args.password_file))
    return 0


def _wallet_show(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_show

    print(wallet_show(args.file))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    wsub = add_group(sub, "wallet", help="your node's Ethereum identity (an encrypted keystore)")
    new = add_command(wsub, "new", _wallet_new, help="create a keystore; the password comes from --password-file, "
                      "ZK0_WALLET_PASSWORD or a prompt (never the command line)")
    new.add_argument("--out", help="keystore file to write (default ~/.zk0/wallet.json); never overwritten")
    new.add_argument("--password-file", help="file holding the password (first line)")
    show = add_command(wsub, "show", _wallet_show, help="print a keystore's address (no password needed)")
    show.add_argument("file", nargs="?", help="keystore file (default ~/.zk0/wallet.json)")
