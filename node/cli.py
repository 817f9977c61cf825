"""``zk0node``: the node operator's command line (wallet, dataset check, start a SuperNode)."""

from __future__ import annotations

import argparse
import sys

from node.errors import UserError
from node.logs import setup_logging


def _wallet_new(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_new

    print(wallet_new(args.out, args.password_file))
    return 0


def _wallet_show(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_show

    print(wallet_show(args.file))
    return 0


def _dataset_check(args: argparse.Namespace) -> int:
    from node.datasets import load_metadata

    meta = load_metadata(args.uri)
    cams = [k.removeprefix("observation.images.") for k in meta.features if k.startswith("observation.images.")]
    print(f"ok: {args.uri}: {meta.total_episodes} episodes, {meta.total_frames} frames at {meta.fps} fps, "
          f"robot {meta.robot_type}, cameras {', '.join(cams)}, tasks {len(meta.tasks)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk0node", description="zk0 node: train the shared SO-100 policy on "
                                     "your own data, prove and sign what you send.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the libraries' own logs")
    sub = parser.add_subparsers(dest="command", required=True)

    wallet = sub.add_parser("wallet", help="your node's Ethereum identity (an encrypted keystore)")
    wsub = wallet.add_subparsers(dest="wallet_command", required=True)
    new = wsub.add_parser("new", help="create a keystore; the password comes from --password-file, "
                          "ZK0_WALLET_PASSWORD or a prompt (never the command line)")
    new.add_argument("--out", help="keystore file to write (default ~/.zk0/wallet.json); never overwritten")
    new.add_argument("--password-file", help="file holding the password (first line)")
    new.set_defaults(func=_wallet_new)
    show = wsub.add_parser("show", help="print a keystore's address (no password needed)")
    show.add_argument("file", nargs="?", help="keystore file (default ~/.zk0/wallet.json)")
    show.set_defaults(func=_wallet_show)

    dataset = sub.add_parser("dataset", help="check a dataset before training on it")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    check = dsub.add_parser("check", help="load a dataset's metadata and check it is an SO-100 LeRobot dataset")
    check.add_argument("uri", help="hf:<owner/name> (Hugging Face Hub) or local:<path> (a LeRobot dataset folder)")
    check.set_defaults(func=_dataset_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from contracts.wallet import WalletError

    try:
        return args.func(args)
    except (UserError, WalletError) as err:
        print(f"zk0node: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zk0node: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
