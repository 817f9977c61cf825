"""``zk0node app-hash``: the hash a node pins with ``start --app-hash``, computed from source the user reviewed."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cliargs import add_command


def _app_hash(args: argparse.Namespace) -> int:
    from node.trust import SOURCE_ROOT, app_hash, bundle_hash

    path = Path(args.path or SOURCE_ROOT).expanduser()
    print(bundle_hash(path.read_bytes()) if path.is_file() else app_hash(path))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    app = add_command(sub, "app-hash", _app_hash, help="print the hash of the zk0 app bundle built from a source tree "
                      "you have reviewed (or of a .fab file): pin it with zk0node start --app-hash")
    app.add_argument("path", nargs="?", help="zk0 source tree, or an app bundle (.fab) file (default: the source "
                     "tree this zk0node runs from)")
