"""``zk0node start``: join a federation by becoming a Flower SuperNode pinned to the app bundles the user reviewed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from node.cli.common import password_flag, wallet_path
from node.cliargs import add_command, at_least, port
from node.logs import teed_output


def _start(args: argparse.Namespace) -> int:
    """Check everything a user can get wrong (cheapest first), say what will run, then become the supervisor of the
    SuperNode (``node.supervise``): however it stops, every process it started ends with the command (issue 34)."""
    from contracts.wallet import load_account, resolve_password
    from node.datasets import check_readable, load_metadata
    from node.status import write_node_state
    from node.supernode import SuperNodeOptions
    from node.trust import parse_app_hash
    from prover.hashing import file_sha256

    options = SuperNodeOptions(
        superlink=args.superlink, dataset=args.dataset, wallet=wallet_path(args),
        app_hashes=[parse_app_hash(h) for h in args.app_hash], state_dir=Path(args.state_dir).expanduser(),
        srs=args.srs, cache_dir=Path(args.cache_dir), insecure=args.insecure,
        root_certificates=args.root_certificates, auth_key=args.auth_key, runtime_port=args.runtime_port,
        max_wait_time=args.max_wait_time, warm_clientapp=not args.cold_clientapp,
        extra_node_config=_pins(args))
    with teed_output(options.state_dir / "zk0node.log") as tee:  # the SuperNode's output too: it inherits both
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
        # This pid stays the node's (the supervisor it becomes runs flower-supernode, named on its command line).
        write_node_state(options.state_dir, {
            "pid": os.getpid(), "superlink": args.superlink, "insecure": args.insecure,
            "app_hashes": options.app_hashes, "wallet": str(options.wallet.resolve()), "address": account.address,
            "dataset": args.dataset, "srs": args.srs, "runtime_port": args.runtime_port, "log": str(tee.path)})
        print(f"  log       {tee.path}   (zk0node status --state-dir {options.state_dir})", flush=True)
        if options.warm_clientapp and options.host_socket is None:
            print(f"  note      no warm ClientApp host: its socket path under {options.state_dir.resolve()} would be "
                  "100 characters or more (a Unix socket's limit); each message starts a fresh Python (seconds "
                  "slower). A shorter --state-dir keeps it.", flush=True)
        # Not this Python (its checks imported ~1 GB of torch and LeRobot): a small supervisor, same pid, that
        # owns the SuperNode and the warm host, passes Ctrl-C and `kill PID` on, and leaves no process behind.
        options.supervise(options.environment(password), tee.path, tee.path.stat().st_size, tee.hand_over())
    return 0  # not reached


def _pins(args: argparse.Namespace) -> dict:
    """The node's own limits, passed to its ClientApp as node-config: privacy budget, and the registry and chain it
    signs for (a round naming others is refused: the aggregator does not choose where a node's word counts)."""
    from node.errors import UserError

    pins: dict = {} if args.dp_max_epsilon is None else {"dp-max-epsilon": args.dp_max_epsilon}
    if args.registry is not None:
        from eth_utils import is_address, to_checksum_address

        if not is_address(args.registry):
            raise UserError(f"--registry {args.registry!r} is not an address (0x and 40 hex digits)")
        pins["registry"] = to_checksum_address(args.registry)
    if args.chain_id is not None:
        pins["chain-id"] = args.chain_id
    if args.lora_rank is not None:
        pins["lora-rank"] = args.lora_rank
    return pins


def add_parser(sub: argparse._SubParsersAction) -> None:
    start = add_command(
        sub, "start", _start,
        help="join a federation: run a Flower SuperNode that trains on your dataset, proves and signs",
        description="Run a Flower SuperNode for this node. It connects to the aggregator's SuperLink, runs the zk0 "
        "ClientApp on your dataset for every round, and signs what it sends with your wallet. It runs only the app "
        "bundle(s) you pinned with --app-hash and refuses any other code the aggregator sends. The wallet password "
        "comes from --password-file or ZK0_WALLET_PASSWORD (never the command line). It runs until the SuperNode "
        "stops (Ctrl-C, SIGTERM, or --max-wait-time without a SuperLink: exit 2 with the reason) and leaves no "
        "process behind.")
    start.add_argument("--superlink", required=True, metavar="HOST:PORT",
                       help="the aggregator's SuperLink (Fleet API) address")
    start.add_argument("--dataset", required=True, metavar="URI",
                       help="your private dataset: local:<path> (LeRobot folder) or hf:<owner/name>; it never "
                       "leaves this machine")
    start.add_argument("--wallet", metavar="FILE", help="your keystore (default ~/.zk0/wallet.json); its address must "
                       "be approved by the aggregator operator")
    password_flag(start)
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
                       help="give up (exit 2) if the SuperLink cannot be reached for this long (default: retry "
                       "forever)")
    start.add_argument("--dp-max-epsilon", type=float, metavar="EPS",
                       help="your privacy limit: refuse any round that would bring the differential-privacy loss of "
                       "your updates above ε = EPS at the federation's δ, and any federation without DP "
                       "(docs/privacy.md)")
    start.add_argument("--lora-rank", type=at_least(0), metavar="R",
                       help="train only at this LoRA rank (0: full updates): a round of another rank is refused "
                       "(default: the federation's)")
    start.add_argument("--registry", metavar="0x…", help="the registry you staked on: sign for no other (a round "
                       "naming another is refused; recommended)")
    start.add_argument("--chain-id", type=at_least(1), metavar="N", help="the chain of that registry: sign for no "
                       "other")
    start.add_argument("--cold-clientapp", action="store_true",
                       help="no warm ClientApp host: every message starts a fresh Python and imports torch, LeRobot "
                       "and EZKL again (Flower's own way; ~15 s slower per message)")
