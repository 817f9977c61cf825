"""``zk0node``: the node operator's command line (wallet, dataset check, start a SuperNode)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from node.cliargs import Parser, at_least, port, survive_closed_stdout
from node.errors import UserError
from node.logs import setup_logging, tee_output


def _wallet_new(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_new

    print(wallet_new(args.out, args.password_file))
    return 0


def _wallet_show(args: argparse.Namespace) -> int:
    from contracts.wallet import wallet_show

    print(wallet_show(args.file))
    return 0


def _dataset_check(args: argparse.Namespace) -> int:
    from node.datasets import check_readable, load_metadata

    meta = load_metadata(args.uri)
    read = check_readable(args.uri)
    cams = [k.removeprefix("observation.images.") for k in meta.features if k.startswith("observation.images.")]
    print(f"ok: {args.uri}: {meta.total_episodes} episodes, {meta.total_frames} frames at {meta.fps} fps, "
          f"robot {meta.robot_type}, cameras {', '.join(cams)}, tasks {len(meta.tasks)}; "
          f"{'one frame read from ' + ', '.join(read) if read else 'frames not read (Hub dataset)'}")
    return 0


def _app_hash(args: argparse.Namespace) -> int:
    from node.trust import SOURCE_ROOT, app_hash, bundle_hash

    path = Path(args.path or SOURCE_ROOT).expanduser()
    print(bundle_hash(path.read_bytes()) if path.is_file() else app_hash(path))
    return 0


def _start(args: argparse.Namespace) -> int:
    """Check everything a user can get wrong (cheapest first), say what will run, then become the SuperNode."""
    from contracts.wallet import DEFAULT_WALLET, load_account, resolve_password
    from node.datasets import check_readable, load_metadata
    from node.status import write_node_state
    from node.supernode import SuperNodeOptions
    from node.trust import parse_app_hash
    from prover.hashing import file_sha256

    options = SuperNodeOptions(
        superlink=args.superlink, dataset=args.dataset, wallet=Path(args.wallet or DEFAULT_WALLET).expanduser(),
        app_hashes=[parse_app_hash(h) for h in args.app_hash], state_dir=Path(args.state_dir).expanduser(),
        srs=args.srs, cache_dir=Path(args.cache_dir), insecure=args.insecure,
        root_certificates=args.root_certificates, auth_key=args.auth_key, runtime_port=args.runtime_port,
        max_wait_time=args.max_wait_time)
    log_file = tee_output(options.state_dir / "zk0node.log")  # the SuperNode's output too: it inherits both
    password = resolve_password(args.password_file)
    account = load_account(options.wallet, password)
    meta = load_metadata(args.dataset)
    check_readable(args.dataset)
    srs = "DEVELOPMENT SRS (made on this machine: proofs are forgeable; tests and demos only)" \
        if args.srs == "dev" else f"{Path(args.srs).resolve()} (sha256 {file_sha256(Path(args.srs))})"
    options.prepare()
    print(f"zk0 node {account.address}\n"
          f"  dataset   {args.dataset}: {meta.total_episodes} episodes, {meta.total_frames} frames (stays here)\n"
          f"  wallet    {options.wallet}\n"
          f"  srs       {srs}\n"
          f"  runs only app bundle(s) {', '.join(options.app_hashes)}\n"
          f"  superlink {args.superlink} ({'INSECURE plain text' if args.insecure else 'TLS'}"
          f"{', authenticated' if args.auth_key else ''})", flush=True)
    cmd = options.command()
    write_node_state(options.state_dir, {
        "pid": os.getpid(), "superlink": args.superlink, "insecure": args.insecure, "app_hashes": options.app_hashes,
        "wallet": str(options.wallet.resolve()), "address": account.address, "dataset": args.dataset,
        "srs": args.srs, "runtime_port": args.runtime_port, "log": str(log_file)})
    print(f"  log       {log_file}   (zk0node status --state-dir {options.state_dir})", flush=True)
    # The SuperNode takes this process over (same pid): Ctrl-C and `kill PID` stop it.
    os.execve(cmd[0], cmd, options.environment(password))
    return 0  # not reached


def _status(args: argparse.Namespace) -> int:
    """Is this machine's SuperNode up; what it is pinned to. Exit 0 when it runs, 1 when nothing runs."""
    from node.status import node_status

    status = node_status(args.state_dir)
    if not status.started:
        print(f"no SuperNode runs here: nothing was started with --state-dir {args.state_dir} "
              f"({status.state_file} missing); start one with zk0node start")
        return 1
    f = status.facts
    state = "UP" if status.alive else "NOT RUNNING"
    print(f"SuperNode {state} (pid {f.get('pid')}, started {f.get('started_at')})\n"
          f"  superlink  {f.get('superlink')} "
          f"({'reachable' if status.superlink_reachable else 'NOT reachable' if status.alive else '-'}, "
          f"{'INSECURE plain text' if f.get('insecure') else 'TLS'})\n"
          f"  runtime    127.0.0.1:{f.get('runtime_port')} "
          f"({'listening' if status.runtime_listening else 'not listening'})\n"
          f"  app hashes {', '.join(f.get('app_hashes', []))} (the only bundles it runs)\n"
          f"  wallet     {f.get('address')} ({f.get('wallet')})\n"
          f"  dataset    {f.get('dataset')}\n"
          f"  srs        {f.get('srs')}\n"
          f"  log        {f.get('log')}")
    if not status.alive:
        print(f"nothing runs: the SuperNode last started from {args.state_dir} has exited (see its log)")
    return 0 if status.alive else 1


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="zk0node", description="zk0 node: train the shared SO-100 policy on "
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

    app = sub.add_parser("app-hash", help="print the hash of the zk0 app bundle built from a source tree you have "
                         "reviewed (or of a .fab file): pin it with zk0node start --app-hash")
    app.add_argument("path", nargs="?", help="zk0 source tree, or an app bundle (.fab) file (default: the source "
                     "tree this zk0node runs from)")
    app.set_defaults(func=_app_hash)

    start = sub.add_parser(
        "start", help="join a federation: run a Flower SuperNode that trains on your dataset, proves and signs",
        description="Run a Flower SuperNode for this node. It connects to the aggregator's SuperLink, runs the zk0 "
        "ClientApp on your dataset for every round, and signs what it sends with your wallet. It runs only the app "
        "bundle(s) you pinned with --app-hash and refuses any other code the aggregator sends. The wallet password "
        "comes from --password-file or ZK0_WALLET_PASSWORD (never the command line).")
    start.add_argument("--superlink", required=True, metavar="HOST:PORT",
                       help="the aggregator's SuperLink (Fleet API) address")
    start.add_argument("--dataset", required=True, metavar="URI",
                       help="your private dataset: local:<path> (LeRobot folder) or hf:<owner/name>; it never "
                       "leaves this machine")
    start.add_argument("--wallet", metavar="FILE", help="your keystore (default ~/.zk0/wallet.json); its address must "
                       "be approved by the aggregator operator")
    start.add_argument("--password-file", metavar="FILE", help="file holding the wallet password (default: "
                       "ZK0_WALLET_PASSWORD, else a prompt)")
    start.add_argument("--app-hash", action="append", required=True, metavar="SHA256",
                       help="sha256 of the only app bundle this node runs (zk0node app-hash DIR on the source you "
                       "reviewed); repeat to allow several versions")
    start.add_argument("--srs", default="dev", metavar="FILE|dev",
                       help="the federation's KZG SRS file (check its sha256 against the published one); 'dev' makes "
                       "a development SRS here, for tests and demos only (default: dev)")
    start.add_argument("--root-certificates", type=Path, metavar="CA",
                       help="CA certificate (PEM) that signed the SuperLink's TLS certificate")
    start.add_argument("--auth-key", type=Path, metavar="KEY",
                       help="this node's SuperNode private key (ECDSA P-384, PEM) when the SuperLink authenticates "
                       "nodes; give its public key to the aggregator operator (needs TLS)")
    start.add_argument("--insecure", action="store_true",
                       help="no TLS: only for a SuperLink on this machine (loopback development)")
    start.add_argument("--cache-dir", default=".zk0/fixtures",
                       help="model and circuit cache (default .zk0/fixtures)")
    start.add_argument("--state-dir", default="~/.zk0/node",
                       help="where the SuperNode's node-config and app guard live (default ~/.zk0/node)")
    start.add_argument("--runtime-port", type=port, default=9094,
                       help="local port of the SuperNode's Runtime API for its ClientApp processes (default 9094; "
                       "one per SuperNode on a machine)")
    start.add_argument("--max-wait-time", type=at_least(1, float), metavar="SECONDS",
                       help="give up if the SuperLink cannot be reached for this long (default: retry forever)")
    start.set_defaults(func=_start)

    status = sub.add_parser("status", help="is this machine's SuperNode up; its SuperLink, pinned app hash, wallet "
                            "address and dataset (exit 1 when nothing runs)")
    status.add_argument("--state-dir", default="~/.zk0/node", help="the --state-dir of zk0node start (default "
                        "~/.zk0/node)")
    status.set_defaults(func=_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from contracts.wallet import WalletError

    try:
        return survive_closed_stdout(lambda: args.func(args))
    except (UserError, WalletError) as err:
        print(f"zk0node: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zk0node: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
