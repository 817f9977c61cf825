"""``zk0node``: the node operator's command line (wallet, dataset check, start a SuperNode, stake and rewards)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from node.cliargs import Parser, at_least, port, run_command
from node.errors import UserError
from node.logs import tee_output


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
        max_wait_time=args.max_wait_time, warm_clientapp=not args.cold_clientapp,
        extra_node_config={} if args.dp_max_epsilon is None else {"dp-max-epsilon": args.dp_max_epsilon})
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
    env = options.environment(password)
    options.start_clientapp_host(env)  # our child, so the SuperNode's child once we become it
    # The SuperNode takes this process over (same pid): Ctrl-C and `kill PID` stop it.
    os.execve(cmd[0], cmd, env)
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


# ----------------------------------------------------------------------------------------------- stake, rewards

WEI = 10**18


def _registry(args: argparse.Namespace, signing: bool):
    """The registry, sending as the node's wallet when ``signing`` (the password from a file, env or prompt)."""
    from web3 import Web3

    from contracts import Registry, connect
    from contracts.wallet import DEFAULT_WALLET, load_account, resolve_password

    if not Web3.is_address(args.registry):
        raise UserError(f"bad --registry address {args.registry!r}: expected 0x followed by 40 hex digits")
    wallet = Path(args.wallet or DEFAULT_WALLET).expanduser()
    key = load_account(wallet, resolve_password(args.password_file)).key if signing else None
    return Registry.at(connect(args.chain_rpc), args.registry, key)


def _address(args: argparse.Namespace) -> str:
    from contracts.wallet import DEFAULT_WALLET, read_address

    return read_address(Path(args.wallet or DEFAULT_WALLET).expanduser())


def _stake_line(registry, address: str) -> str:
    info, params = registry.stake_of(address), registry.params()
    state = f"exiting, withdrawable once {info.unlock_at} rounds have opened" if info.exiting else (
        "approved: takes part" if registry.is_approved(address) else
        f"not admitted yet (min stake {params.min_stake / WEI:g} ETH"
        f"{', and the owner approves each wallet' if params.approval_required else ''})")
    return f"{address} stakes {info.amount / WEI:g} ETH in registry {registry.address}: {state}"


def _tx(receipt) -> str:
    return f"tx 0x{bytes(receipt['transactionHash']).hex()}"


def _stake(args: argparse.Namespace) -> int:
    from contracts import parse_amount

    try:
        amount = parse_amount(args.amount)
    except ValueError as err:
        raise UserError(f"bad stake amount: {err}") from None
    if amount == 0:
        raise UserError("stake a positive amount (in ETH, e.g. 1.5)")
    registry = _registry(args, signing=True)
    receipt = registry.stake(amount)
    print(f"staked {amount / WEI:g} ETH ({_tx(receipt)})\n{_stake_line(registry, registry.sender.address)}")
    return 0


def _unstake(args: argparse.Namespace) -> int:
    registry = _registry(args, signing=True)
    if args.withdraw:
        before = registry.stake_of(registry.sender.address).amount
        receipt = registry.withdraw_stake()
        print(f"withdrew {before / WEI:g} ETH ({_tx(receipt)})")
        return 0
    receipt = registry.request_unstake()
    info = registry.stake_of(registry.sender.address)
    print(f"unstake requested ({_tx(receipt)}): the wallet no longer takes part; its {info.amount / WEI:g} ETH stay "
          f"slashable until {info.unlock_at} rounds have opened ({registry.rounds_opened()} so far), then run "
          "zk0node unstake --withdraw")
    return 0


def _rewards(args: argparse.Namespace) -> int:
    from web3 import Web3

    if args.address and not Web3.is_address(args.address):
        raise UserError(f"bad address {args.address!r}: expected 0x followed by 40 hex digits")
    registry = _registry(args, signing=False)
    address = Web3.to_checksum_address(args.address) if args.address else _address(args)
    pending, records = registry.pending_rewards(address)
    print(f"{address} in registry {registry.address} (chain {registry.chain_id}):\n"
          f"  rewards pending {pending / WEI:,.4f} ZK0" + (f" from round(s) {_rounds_text(records)}"
                                                       f" (zk0node claim)" if records else "") + "\n"
          f"  rewards claimed {registry.reward_balance(address) / WEI:,.4f} ZK0 (token balance)\n"
          f"  {_stake_line(registry, address)}")
    return 0


def _claim(args: argparse.Namespace) -> int:
    registry = _registry(args, signing=True)
    address = registry.sender.address
    pending, records = registry.pending_rewards(address)
    if not records:
        raise UserError(f"{address} has no unpaid rewards in registry {registry.address} (zk0node rewards)")
    receipt = registry.claim(address, records)
    print(f"claimed {pending / WEI:,.4f} ZK0 for round(s) {_rounds_text(records)} ({_tx(receipt)}); "
          f"balance {registry.reward_balance(address) / WEI:,.4f} ZK0")
    return 0


def _rounds_text(records) -> str:
    """'1, 2 of run 0xab12…; 1 of run 0xcd34…': the rounds of records, run by run."""
    runs: dict[str, list[int]] = {}
    for r in records:
        runs.setdefault(r.run_id, []).append(r.round)
    return "; ".join(f"{', '.join(map(str, rounds))} of run {run[:10]}…" for run, rounds in runs.items())


def _chain_flags(parser: argparse.ArgumentParser, signing: bool = True) -> None:
    parser.add_argument("--chain-rpc", required=True, metavar="URL", help="the federation's Ethereum JSON-RPC endpoint")
    parser.add_argument("--registry", required=True, metavar="ADDRESS", help="the federation's registry address")
    parser.add_argument("--wallet", metavar="FILE", help="your keystore (default ~/.zk0/wallet.json)")
    if signing:
        parser.add_argument("--password-file", metavar="FILE", help="file holding the wallet password (default: "
                            "ZK0_WALLET_PASSWORD, else a prompt)")


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
    start.add_argument("--dp-max-epsilon", type=float, metavar="EPS",
                       help="your privacy limit: refuse any round that would bring the differential-privacy loss of "
                       "your updates above ε = EPS at the federation's δ, and any federation without DP "
                       "(docs/privacy.md)")
    start.add_argument("--cold-clientapp", action="store_true",
                       help="no warm ClientApp host: every message starts a fresh Python and imports torch, LeRobot "
                       "and EZKL again (Flower's own way; ~15 s slower per message)")
    start.set_defaults(func=_start)

    status = sub.add_parser("status", help="is this machine's SuperNode up; its SuperLink, pinned app hash, wallet "
                            "address and dataset (exit 1 when nothing runs)")
    status.add_argument("--state-dir", default="~/.zk0/node", help="the --state-dir of zk0node start (default "
                        "~/.zk0/node)")
    status.set_defaults(func=_status)

    stake = sub.add_parser("stake", help="stake ETH in the registry: a federation with a min stake admits only "
                           "wallets that staked it (its owner may also have to approve you)")
    stake.add_argument("amount", metavar="ETH", help="amount to add to your stake, e.g. 1.5 (or 10wei)")
    _chain_flags(stake)
    stake.set_defaults(func=_stake)
    unstake = sub.add_parser("unstake", help="ask for your stake back (you stop taking part; it stays slashable for "
                             "the registry's unstake delay), then --withdraw it")
    unstake.add_argument("--withdraw", action="store_true", help="withdraw the stake once the delay is over")
    _chain_flags(unstake)
    unstake.set_defaults(func=_unstake)
    rewards = sub.add_parser("rewards", help="your rewards (pending and claimed) and stake, read from the chain "
                             "(no password needed)")
    rewards.add_argument("address", nargs="?", help="any wallet address (default: your keystore's)")
    _chain_flags(rewards, signing=False)
    rewards.set_defaults(func=_rewards)
    claim = sub.add_parser("claim", help="mint your pending reward tokens to your wallet (you pay the gas)")
    _chain_flags(claim)
    claim.set_defaults(func=_claim)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
