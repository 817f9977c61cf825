"""``zk0node wallet new|show``: the node's Ethereum identity, an encrypted keystore."""

from __future__ import annotations

import argparse
import sys

from node.cliargs import add_command, add_group

_UNCHECKED = ("note: this address is what the file says, not checked against its key; to check it: zk0node wallet "
              "show --password-file FILE (or set ZK0_WALLET_PASSWORD)")


def _wallet_new(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_new

    print(wallet_new(args.out, args.password_file))
    return 0


def _wallet_show(args: argparse.Namespace) -> int:
    """stdout: the address only (scripts read it); whether it was checked against the key goes to stderr."""
    from contracts.wallet import given_password, wallet_show

    password = given_password(args.password_file)
    print(wallet_show(args.file, password))
    sys.stdout.flush()  # the address before the note, in a terminal that shows both
    print(_UNCHECKED if password is None else "checked: the file's key holds this address", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    wsub = add_group(sub, "wallet", help="your node's Ethereum identity (an encrypted keystore)")
    new = add_command(wsub, "new", _wallet_new, help="create a keystore; the password comes from --password-file, "
                      "ZK0_WALLET_PASSWORD or a prompt (never the command line)")
    new.add_argument("--out", help="keystore file to write (default ~/.zk0/wallet.json); never overwritten")
    new.add_argument("--password-file", help="file holding the password (first line)")
    show = add_command(wsub, "show", _wallet_show, help="print a keystore's address; with its password "
                       "(--password-file or ZK0_WALLET_PASSWORD; never prompted) also check that its key holds it",
                       description="Print the address of a keystore. Without a password this is the address the "
                       "file names in clear, unchecked. With its password (--password-file FILE or "
                       "ZK0_WALLET_PASSWORD; never prompted) the key is decrypted and must hold that address "
                       "(exit 2 otherwise): check it so before you send the address for approval.")
    show.add_argument("file", nargs="?", help="keystore file (default ~/.zk0/wallet.json)")
    show.add_argument("--password-file", metavar="FILE", help="file holding the wallet password: check the address "
                      "against the key")
