"""``zk0agg start``: the federation's SuperLink (and optionally the verifier service) until stopped.

It writes the connection facts to ``<state-dir>/federation.json``, which ``run``, ``approve`` and
``contributions`` read for their defaults.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from aggregator.cli.common import (
    AGGREGATOR_KEY_ENV,
    VERIFIER_TOKEN_ENV,
    add_chain_flags,
    add_state_flag,
    chain_of,
    check_dataset,
    dataset_uri,
    open_registry,
    read_key,
)
from contracts.endpoints import redact_url
from node.cliargs import add_command, port
from node.errors import UserError
from node.logs import tee_output


def add_parser(sub: argparse._SubParsersAction) -> None:
    start = add_command(
        sub, "start", _start,
        help="run the federation's SuperLink (and optionally the verifier service) until stopped",
        description="Run Flower's SuperLink for this federation until Ctrl-C: nodes connect to it, zk0agg run submits "
        "runs to it. Its ServerApp processes run only the pinned app bundle, only for runs zk0agg run submitted on "
        f"this machine, and get the aggregator key through their environment ({AGGREGATOR_KEY_ENV}), never through "
        "the run config that every node receives. Flower's Control API answers this machine only.")
    start.add_argument("--host", help="address to listen on (default 0.0.0.0; 127.0.0.1 with --insecure)")
    start.add_argument("--port", type=port, default=9092,
                       help="the one port of the Fleet (nodes), Control (runs) and Runtime APIs (default 9092)")
    start.add_argument("--insecure", action="store_true", help="no TLS: loopback development only")
    start.add_argument("--ssl-certfile", type=Path, metavar="CERT", help="the SuperLink's TLS certificate (PEM)")
    start.add_argument("--ssl-keyfile", type=Path, metavar="KEY", help="its private key (PEM)")
    start.add_argument("--ssl-ca-certfile", type=Path, metavar="CA",
                       help="the CA certificate that signed it (nodes get this file as --root-certificates)")
    start.add_argument("--validation", metavar="URI", type=dataset_uri,
                       help="the validation set every update is scored on (local:PATH, relative to this folder, or "
                       "hf:REPO): data no node trains on, other than the held-out set; without it updates are not "
                       "scored")
    start.add_argument("--enable-supernode-auth", action="store_true",
                       help="accept only SuperNodes whose public keys were registered (flwr supernode register)")
    add_chain_flags(start)
    start.add_argument("--aggregator-key-file", metavar="FILE",
                       help=f"the registry's aggregator key (default: env {AGGREGATOR_KEY_ENV})")
    start.add_argument("--app-hash", action="append", default=[], metavar="SHA256",
                       help="app bundle(s) the ServerApp may run (default: the bundle of this zk0 source tree)")
    _add_verifier_flags(start)
    start.add_argument("--onchain-verify", action="store_true",
                       help="the registry also verifies each signed reply's proof (EZKL's verifier contract)")
    start.add_argument("--control-api-public", action="store_true",
                       help="answer Flower's Control API (submit, stop, list runs, read logs, register SuperNodes) "
                       "from any address, not this machine's only: put Flower's account authentication in front of "
                       "it first (it has no login otherwise); runs zk0agg run did not submit are refused either way")
    add_state_flag(start)


def _add_verifier_flags(start: argparse.ArgumentParser) -> None:
    start.add_argument("--verifier-url", metavar="URL",
                       help="a running zk0agg verifier serve, or several, comma-separated, sharing one token "
                       f"(--verifier-token-file or {VERIFIER_TOKEN_ENV})")
    start.add_argument("--verifier-token-file", metavar="FILE", help="bearer token of --verifier-url")
    start.add_argument("--verifier-circuit", action="append", metavar="DIR",
                       help="start the verifier service here for this circuit folder (repeatable)")
    start.add_argument("--verifier-srs", metavar="FILE", help="SRS file for --verifier-circuit")
    start.add_argument("--verifier-srs-dev", action="store_true", help="the verifier's SRS is a development one")
    start.add_argument("--verifier-port", type=port, default=8470, help="port of the started verifier (default 8470)")


def private_state(state_dir: Path) -> None:
    """The state folder and everything in it the operator's alone (N12, issue 30): it holds the SuperLink's
    database and logs (runs, nodes, their public keys), the operator settings and federation.json. Folder 0700,
    files 0600, and a umask of 077 for this process and all it starts (the SuperLink, the ServerApps)."""
    os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    for path in state_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def _start(args: argparse.Namespace) -> int:
    """SuperLink (+ verifier service) in the foreground until Ctrl-C or SIGTERM."""
    from aggregator.tools.deploy import ManagedProcess, SuperLinkOptions, write_state
    from node.trust import SOURCE_ROOT, app_hash, parse_app_hash

    state_dir = Path(args.state_dir).expanduser().resolve()
    private_state(state_dir)
    tee_output(state_dir / "zk0agg-start.log")
    chain_rpc, registry, secrets_env = _chain_and_key(args)
    if args.validation:
        check_dataset(args.validation, "--validation", hub=True)  # a bad URI fails here, not in the first round
    hashes = [parse_app_hash(h) for h in args.app_hash] or [app_hash(SOURCE_ROOT)]
    options = SuperLinkOptions(state_dir, hashes, host=args.host or ("127.0.0.1" if args.insecure else "0.0.0.0"),
                               port=args.port, insecure=args.insecure, ssl_certfile=args.ssl_certfile,
                               ssl_keyfile=args.ssl_keyfile, ssl_ca_certfile=args.ssl_ca_certfile,
                               supernode_auth=args.enable_supernode_auth,
                               control_api_public=args.control_api_public)
    processes: list[ManagedProcess] = []
    verifier_url = args.verifier_url
    if verifier_url:
        from aggregator.verifier.client import check_services

        secrets_env[VERIFIER_TOKEN_ENV] = _verifier_token(args.verifier_token_file)
        check_services(verifier_url, secrets_env[VERIFIER_TOKEN_ENV])  # down or refusing: one line, nothing started
    try:
        if args.verifier_circuit:
            verifier_url = _start_verifier(args, state_dir, secrets_env, processes)
        # what every run's ServerApp trusts and where it writes: the operator's, never a run's (aggregator.operator)
        options.operator = {"chain_rpc": chain_rpc or "", "registry": registry or "", "verify": bool(chain_rpc),
                            "verifier_url": verifier_url or "", "onchain_verify": args.onchain_verify,
                            "validation": args.validation or ""}
        superlink = options.start(secrets_env)
        processes.append(superlink)
        state = _start_state(args, options, chain_rpc, registry, verifier_url)
        write_state(state_dir / "federation.json", state)
        _print_started(args, state_dir, options, superlink, state)
        return _wait_for_exit(processes)
    finally:
        for process in reversed(processes):
            process.stop()


def _chain_and_key(args: argparse.Namespace) -> tuple[str | None, str | None, dict[str, str]]:
    """The chain the runs record on, if any, and the aggregator key the ServerApp signs with (checked now)."""
    secrets_env: dict[str, str] = {}
    chain_rpc, registry = args.chain_rpc, args.registry
    if chain_rpc or registry:
        chain_rpc, registry = chain_of(args, {})
        key = read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")
        _check_aggregator(chain_rpc, registry, key)
        secrets_env[AGGREGATOR_KEY_ENV] = key
    return chain_rpc, registry, secrets_env


def _verifier_token(token_file: str | None) -> str:
    if token_file:
        token = Path(token_file).read_text().strip()
    else:
        token = os.environ.get(VERIFIER_TOKEN_ENV, "").strip()
    if not token:
        raise UserError(f"--verifier-url needs the service's token: --verifier-token-file FILE or {VERIFIER_TOKEN_ENV}")
    return token


def _check_aggregator(rpc: str, registry_address: str, key: str) -> None:
    """Fail at start, not mid-round, when the key is not the registry's aggregator."""
    from eth_account import Account

    registry = open_registry(rpc, registry_address)
    expected, ours = registry.aggregator(), Account.from_key(key).address
    if expected.lower() != ours.lower():
        raise UserError(f"the aggregator key is {ours}, but registry {registry_address} expects {expected}")


def _start_verifier(args: argparse.Namespace, state_dir: Path, secrets_env: dict[str, str], processes: list) -> str:
    """Start ``zk0agg verifier serve`` with a fresh token (added to ``processes``); its URL once it listens."""
    from aggregator.tools.deploy import start_process, wait_for_port

    token = secrets.token_urlsafe(32)
    secrets_env[VERIFIER_TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "aggregator.cli", "verifier", "serve", "--port", str(args.verifier_port),
           "--srs-kind", "dev" if args.verifier_srs_dev else "public"]
    for circuit in args.verifier_circuit:
        cmd += ["--circuit", str(Path(circuit).resolve())]
    cmd += ["--srs", str(Path(args.verifier_srs).resolve())] if args.verifier_srs else []
    verifier = start_process("verifier", cmd, state_dir / "verifier.log",
                             env={**os.environ, VERIFIER_TOKEN_ENV: token})
    processes.append(verifier)
    wait_for_port("127.0.0.1", args.verifier_port, verifier, timeout=120)
    return f"http://127.0.0.1:{args.verifier_port}"


def _start_state(args: argparse.Namespace, options, chain_rpc: str | None, registry: str | None,
                 verifier_url: str | None) -> dict:
    """federation.json: what ``run``, ``approve``, ``status``, ... read for their defaults."""
    address = f"{'127.0.0.1' if options.host in ('0.0.0.0', '::') else options.host}:{options.port}"
    return {"superlink": address, "insecure": args.insecure,
            "root_certificates": str(Path(args.ssl_ca_certfile).resolve()) if args.ssl_ca_certfile else None,
            "chain_rpc": chain_rpc, "registry": registry, "verifier_url": verifier_url,
            "app_hashes": options.app_hashes, "operator_file": str(options.operator_file), "pid": os.getpid()}


def _print_started(args: argparse.Namespace, state_dir: Path, options, superlink, state: dict) -> None:
    chain_rpc, registry, verifier_url = state["chain_rpc"], state["registry"], state["verifier_url"]
    shown_rpc = redact_url(chain_rpc)  # a hosted endpoint's key stays off the console and the log
    print(f"zk0 aggregator: SuperLink on {options.address} ({'INSECURE plain text' if args.insecure else 'TLS'}"
          f"{', SuperNode authentication' if args.enable_supernode_auth else ''}), pid {superlink.pid}\n"
          f"  runs only app bundle(s) {', '.join(state['app_hashes'])}\n"
          f"  chain    {f'{shown_rpc}, registry {registry}' if chain_rpc else 'none (unverified runs only)'}\n"
          f"  verifier {verifier_url or 'in the ServerApp process'}\n"
          f"  validation {args.validation or 'none: updates are not scored (--validation URI)'}\n"
          f"  control  {_control_line(options)}\n"
          f"  logs     {superlink.log_path}, {state_dir / 'zk0agg-start.log'}\n"
          f"  status   zk0agg status --state-dir {state_dir}\n"
          f"next: zk0agg run --rounds N --heldout URI   (Ctrl-C stops the aggregator)", flush=True)


def _control_line(options) -> str:
    """Who may use Flower's Control API (one port with the nodes' Fleet API in flwr 1.41), and which runs run."""
    runs = "runs zk0agg run did not submit are refused"
    if options.control_api_public:
        return (f"Flower's Control API open to any address on port {options.port} (--control-api-public): it has no "
                f"login without Flower's account authentication; {runs}")
    return f"Flower's Control API for this machine only (zk0agg run here); {runs}"


def _wait_for_exit(processes: list) -> int:
    """Until SIGTERM (exit 0) or one of ``processes`` dies (exit 1, with the end of its log)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while all(p.running() for p in processes):
        time.sleep(1.0)
    dead = next(p for p in processes if not p.running())
    print(f"zk0agg: error: {dead.name} exited: {dead.log_tail(500).strip()}", file=sys.stderr)
    return 1
