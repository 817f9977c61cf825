"""``zk0agg``: the aggregator operator's command line.

``start`` runs the SuperLink (and optionally the verifier service) until stopped and writes the connection facts
to ``.zk0/aggregator/federation.json``, which ``run``, ``approve`` and ``contributions`` read for their defaults.
Keys never go on a command line: they come from a file (``--*-key-file``) or an environment variable.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

from node.cliargs import Parser, at_least, fraction, port, run_command
from node.errors import UserError
from node.logs import tee_output

STATE_DIR = Path(".zk0/aggregator")
OWNER_KEY_ENV = "ZK0_OWNER_KEY"
AGGREGATOR_KEY_ENV = "ZK0_AGGREGATOR_KEY"  # also what the ServerApp reads (aggregator.config.SECRET_ENV)
VERIFIER_TOKEN_ENV = "ZK0_VERIFIER_TOKEN"
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


# ----------------------------------------------------------------------------------------------- helpers


def read_key(key_file: str | None, env: str, what: str) -> str:
    """A hex private key from ``key_file`` (first line) or the ``env`` variable; never from argv."""
    if key_file:
        try:
            key = Path(key_file).expanduser().read_text().strip()
        except OSError as err:
            raise UserError(f"cannot read the {what} key file {key_file}: {err.strerror}") from None
    else:
        key = os.environ.get(env, "").strip()
        if not key:
            raise UserError(f"no {what} key: give --{what}-key-file FILE or set {env}")
    if not _KEY.match(key):
        raise UserError(f"the {what} key is not a hex private key (64 hex digits)")
    return key if key.startswith("0x") else "0x" + key


def _state(args: argparse.Namespace) -> dict:
    from aggregator.tools.deploy import read_state

    return read_state(Path(args.state_dir) / "federation.json")


def _chain(args: argparse.Namespace, state: dict) -> tuple[str, str]:
    rpc, registry = args.chain_rpc or state.get("chain_rpc"), args.registry or state.get("registry")
    if not rpc or not registry:
        raise UserError("which chain? give --chain-rpc URL and --registry ADDRESS (or run zk0agg start with them)")
    return rpc, registry


def _registry(rpc: str, address: str, key: str | None = None):
    from web3 import Web3

    from contracts import Registry, connect

    if not Web3.is_address(address):
        raise UserError(f"bad registry address {address!r}")
    return Registry.at(connect(rpc), address, key)


def _superlink(args: argparse.Namespace, state: dict) -> tuple[str, bool, Path | None]:
    address = args.superlink or state.get("superlink")
    if not address:
        raise UserError("which SuperLink? give --superlink HOST:PORT (or run zk0agg start first)")
    ca = args.root_certificates or (Path(state["root_certificates"]) if state.get("root_certificates") else None)
    insecure = args.insecure or (state.get("insecure", False) and ca is None)
    if not insecure and ca is None:
        raise UserError("give the CA certificate of the SuperLink (--root-certificates CA.pem), or --insecure")
    return address, insecure, ca


# ----------------------------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    fed = FederationConfig(local_steps=args.local_steps, krum_f=args.krum_f, krum_m=args.krum_m, model=args.model,
                           sim_task=args.task,
                           wandb=_wandb_wanted(args), dp_epsilon=args.dp_epsilon or 0.0,
                           dp_noise_multiplier=args.dp_noise_multiplier or 0.0, dp_clip=args.dp_clip or 0.0)
    demo = DemoConfig(nodes=args.nodes, rounds=args.rounds, out=args.out or "", verify=not args.no_verify,
                      adversary=args.adversary, data=args.data, episodes=args.episodes,
                      eval_episodes=args.eval_episodes, engine=args.engine, validation=not args.no_validation,
                      stake=args.stake)
    print(f"log: {tee_output(Path(demo.out) / 'zk0agg-demo.log')}", flush=True)
    fed.sim_max_steps = args.eval_max_steps
    summary = run_demo(demo, fed)
    return 0 if summary.get("rounds") else 1


def _start(args: argparse.Namespace) -> int:
    """SuperLink (+ verifier service) in the foreground until Ctrl-C or SIGTERM."""
    from aggregator.tools.deploy import ManagedProcess, SuperLinkOptions, start_process, wait_for_port, write_state
    from node.trust import SOURCE_ROOT, app_hash, parse_app_hash

    state_dir = Path(args.state_dir).expanduser().resolve()
    tee_output(state_dir / "zk0agg-start.log")
    secrets_env: dict[str, str] = {}
    chain_rpc, registry = args.chain_rpc, args.registry
    if chain_rpc or registry:
        chain_rpc, registry = _chain(args, {})
        key = read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")
        _check_aggregator(chain_rpc, registry, key)
        secrets_env[AGGREGATOR_KEY_ENV] = key
    if args.validation:
        from node.datasets import load_metadata

        load_metadata(args.validation)  # a bad URI fails here, not in the first round
    hashes = [parse_app_hash(h) for h in args.app_hash] or [app_hash(SOURCE_ROOT)]
    options = SuperLinkOptions(state_dir, hashes, host=args.host or ("127.0.0.1" if args.insecure else "0.0.0.0"),
                               port=args.port, insecure=args.insecure, ssl_certfile=args.ssl_certfile,
                               ssl_keyfile=args.ssl_keyfile, ssl_ca_certfile=args.ssl_ca_certfile,
                               supernode_auth=args.enable_supernode_auth)
    outputs = Path(args.outputs).expanduser().resolve()
    if outputs.exists() and not outputs.is_dir():
        raise UserError(f"--outputs {outputs} is not a folder")
    processes: list[ManagedProcess] = []
    verifier_url = args.verifier_url
    if verifier_url:
        secrets_env[VERIFIER_TOKEN_ENV] = _verifier_token(args.verifier_token_file)
    try:
        if args.verifier_circuit:
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
            verifier_url = f"http://127.0.0.1:{args.verifier_port}"
        # what every run's ServerApp trusts and where it writes: the operator's, never a run's (aggregator.operator)
        options.operator = {"chain_rpc": chain_rpc or "", "registry": registry or "", "verify": bool(chain_rpc),
                            "verifier_url": verifier_url or "", "onchain_verify": args.onchain_verify,
                            "validation": args.validation or "", "outputs": str(outputs)}
        superlink = options.start(secrets_env)
        processes.append(superlink)
        address = f"{'127.0.0.1' if options.host in ('0.0.0.0', '::') else options.host}:{options.port}"
        write_state(state_dir / "federation.json", {
            "superlink": address, "insecure": args.insecure,
            "root_certificates": str(Path(args.ssl_ca_certfile).resolve()) if args.ssl_ca_certfile else None,
            "chain_rpc": chain_rpc, "registry": registry, "verifier_url": verifier_url, "app_hashes": hashes,
            "operator_file": str(options.operator_file), "pid": os.getpid()})
        print(f"zk0 aggregator: SuperLink on {options.address} ({'INSECURE plain text' if args.insecure else 'TLS'}"
              f"{', SuperNode authentication' if args.enable_supernode_auth else ''}), pid {superlink.pid}\n"
              f"  runs only app bundle(s) {', '.join(hashes)}\n"
              f"  chain    {f'{chain_rpc}, registry {registry}' if chain_rpc else 'none (unverified runs only)'}\n"
              f"  verifier {verifier_url or 'in the ServerApp process'}\n"
              f"  validation {args.validation or 'none: updates are not scored (--validation URI)'}\n"
              f"  logs     {superlink.log_path}, {state_dir / 'zk0agg-start.log'}\n"
              f"  status   zk0agg status --state-dir {state_dir}\n"
              f"next: zk0agg run --rounds N --heldout URI   (Ctrl-C stops the aggregator)", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.running() for p in processes):
            time.sleep(1.0)
        dead = next(p for p in processes if not p.running())
        print(f"zk0agg: error: {dead.name} exited: {dead.log_tail(500).strip()}", file=sys.stderr)
        return 1
    finally:
        for process in reversed(processes):
            process.stop()


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

    registry = _registry(rpc, registry_address)
    expected, ours = registry.aggregator(), Account.from_key(key).address
    if expected.lower() != ours.lower():
        raise UserError(f"the aggregator key is {ours}, but registry {registry_address} expects {expected}")


def _run(args: argparse.Namespace) -> int:
    from aggregator.config import SECRET_ENV, FederationConfig
    from aggregator.operator import OPERATOR_KEYS, check_run_paths
    from aggregator.tools.deploy import follow_run, run_config, submit_operator_run
    from node.trust import SOURCE_ROOT, build_app_bundle, bundle_hash

    out_dir = str(Path(args.out or time.strftime("outputs/run-%Y%m%d-%H%M%S")).resolve())
    check_run_paths(out_dir, args.resume)  # first: a bad --out fails before anything is contacted
    state = _state(args)
    address, insecure, ca = _superlink(args, state)
    if not state.get("operator_file"):
        raise UserError(f"no zk0agg start state in {args.state_dir}: zk0agg run submits to the SuperLink that zk0agg "
                        "start runs on this machine (give its --state-dir)")
    if not args.no_verify and not state.get("chain_rpc"):
        raise UserError("the aggregator was started without a chain: zk0agg start --chain-rpc URL --registry "
                        "ADDRESS, or zk0agg run --no-verify")
    fed = FederationConfig(rounds=args.rounds, local_steps=args.local_steps, min_nodes=args.min_nodes,
                           krum_f=args.krum_f, krum_m=args.krum_m, fraction_evaluate=args.fraction_evaluate,
                           heldout=args.heldout, timeout=args.timeout, wandb=_wandb_wanted(args))
    # this run's operator settings: written on this machine for its ServerApp, never sent in the run config
    settings = {"out_dir": out_dir, "resume": args.resume, "verify": not args.no_verify,
                "cache_dir": str(Path(args.cache_dir).resolve()),
                "srs": args.srs if args.srs == "dev" else str(Path(args.srs).resolve())}
    extra = _parse_run_config(args.run_config)
    refused = sorted(k for k in extra if k.replace("-", "_") in (*OPERATOR_KEYS, *SECRET_ENV))
    if refused:
        raise UserError(f"-c {refused[0]}: not a run setting; endpoints, trust settings and paths are the operator's "
                        "(zk0agg start's flags, or this command's --out/--resume/--srs/--cache-dir/--no-verify)")
    tee_output(Path(out_dir) / "zk0agg-run.log")
    if args.fab:
        try:
            fab = Path(args.fab).read_bytes()
        except OSError as err:
            raise UserError(f"cannot read app bundle {args.fab}: {err.strerror}") from None
    else:
        fab = build_app_bundle(args.app or SOURCE_ROOT)
    config = {**run_config(fed, fab), **extra}
    pinned = state.get("app_hashes")
    if pinned and bundle_hash(fab) not in pinned:
        print(f"zk0agg: warning: bundle {bundle_hash(fab)} is not the one zk0agg start pinned: the SuperLink "
              "will refuse it", file=sys.stderr)
    run_id = submit_operator_run(address, fab, config, Path(state["operator_file"]), settings, insecure, ca)
    print(f"run {run_id} submitted to {address}: app bundle {bundle_hash(fab)}, {fed.rounds} round(s), "
          f"{'verified' if settings['verify'] else 'unverified'}; outputs in {settings['out_dir']}", flush=True)
    if args.detach:
        return 0
    result = follow_run(address, run_id, insecure, ca, on_log=lambda text: print(text, end="", flush=True),
                        timeout=args.timeout * (args.rounds + 1) + 600)
    print(f"\nrun {run_id} {result.status}{': ' + result.details if result.details else ''}; "
          f"summary {Path(settings['out_dir']) / 'summary.json'}")
    return 0 if result.status == "completed" else 1


def _wandb_wanted(args: argparse.Namespace) -> bool:
    from aggregator.wandb_log import wandb_default

    return wandb_default() if args.wandb is None else args.wandb


def _wandb_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=None,
                        help="log every round to Weights & Biases (default: on when WANDB_API_KEY is set); "
                        "offline without a key or network: the run folder is <out>/wandb, upload it with wandb sync")


def _parse_run_config(items: list[str]) -> dict:
    import tomllib

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad --run-config {item!r}: expected KEY=VALUE (TOML value, e.g. slice-rows=16)")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare string
    return out


def _approve(args: argparse.Namespace) -> int:
    from web3 import Web3

    if not Web3.is_address(args.address):
        raise UserError(f"bad node address {args.address!r}: expected 0x followed by 40 hex digits")
    rpc, registry_address = _chain(args, _state(args))
    registry = _registry(rpc, registry_address, read_key(args.owner_key_file, OWNER_KEY_ENV, "owner"))
    receipt = registry.revoke_node(args.address) if args.revoke else registry.approve_node(args.address)
    verb = "revoked" if args.revoke else "approved"
    print(f"{verb} {Web3.to_checksum_address(args.address)} in registry {registry.address} "
          f"(tx 0x{bytes(receipt['transactionHash']).hex()})")
    return 0


def _contributions(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from web3 import Web3

    from aggregator.outputs import print_table

    rpc, registry_address = _chain(args, _state(args))
    registry = _registry(rpc, registry_address)
    filters: dict = {}
    if args.node:
        if not Web3.is_address(args.node):
            raise UserError(f"bad node address {args.node!r}")
        filters["node"] = Web3.to_checksum_address(args.node)
    if args.round is not None:
        filters["round"] = args.round
    runs = [r["run_id"] for r in registry.runs()]
    if args.run:
        matching = [r for r in runs if r.startswith(args.run.lower())]
        if len(matching) != 1:
            raise UserError(f"--run {args.run}: {'no' if not matching else 'more than one'} run of registry "
                            f"{registry.address} starts so; its runs: {', '.join(runs) or 'none'}")
        filters["runId"] = bytes.fromhex(matching[0][2:])
    events = registry.events("ContributionRecorded", **filters)  # records live in events; storage keeps hashes
    table = Table(title=f"contributions in registry {registry.address} (chain {registry.chain_id}, "
                        f"{len(runs)} run(s))")
    for column in ("run", "round", "node", "status", "reason", "signed", "proof on chain", "loss before → after",
                   "score", "reward (ZK0)", "update hash", "tx"):
        table.add_column(column)
    rounds_info: dict = {}
    for event in events:
        r = registry.record_of_event(event)
        losses = f"{r.loss_before:.4f} → {r.loss_after:.4f}" if r.signed else "-"
        table.add_row(r.run_id[:10] + "…", str(r.round), r.node, r.status.name, r.reason.name if r.reason.value else "",
                      "yes" if r.signed else "no", "yes" if r.proof_verified else "no", losses,
                      f"{r.score:+.4f}" if r.signed else "-", _reward_cell(registry, r, rounds_info),
                      r.update_hash[:10] + "…", event["tx_hash"][:10] + "…")
    print_table(Console(), table)  # uncut in a pipe too
    if not events:
        print("no contributions recorded" + (f" for round {args.round}" if args.round is not None else ""))
    return 0


def _reward_cell(registry, record, rounds_info: dict) -> str:
    """What a record earns: emission × score / the round's score total for a SELECTED record with a positive score
    in a closed round; 'pending' until claimed ('paid' after, or forfeited by a slash)."""
    from aggregator.ledger.incentives import tokens
    from contracts import Status

    if record.status != Status.SELECTED or record.score <= 0:
        return "-"
    key = (record.run_id, record.round)
    if key not in rounds_info:
        rounds_info[key] = registry.round_info(*key)
    info = rounds_info[key]
    if info.state != "closed":
        return "round open"
    earned = info.emission * record.score / info.score_total if info.score_total > 0 else 0
    pending = registry.reward_of(record)
    return f"{tokens(int(earned))} " + ("pending" if pending else "paid or slashed")


def _register_circuit(args: argparse.Namespace) -> int:
    """Owner: deploy the EZKL verifier and register the federation's circuit (once; a second time reuses it)."""
    from aggregator.tools.circuit_registration import ensure_circuit_registered, federation_circuit

    rpc, registry_address = _chain(args, _state(args))
    owner = _registry(rpc, registry_address, read_key(args.owner_key_file, OWNER_KEY_ENV, "owner"))
    if args.slice_rows < 1:
        raise UserError(f"--slice-rows must be at least 1, got {args.slice_rows}")
    if args.srs != "dev" and not Path(args.srs).is_file():
        raise UserError(f"no SRS file at {args.srs}: give the federation's SRS (or dev for a development one)")
    circuit = federation_circuit(args.model, args.dataset, args.slice_rows, args.srs, args.cache_dir)
    info, new = ensure_circuit_registered(owner, circuit)
    print(f"circuit {circuit.circuit_id} {'registered' if new else 'was already registered'} in registry "
          f"{owner.address}: verifier {info.verifier}, proofs of {info.proof_length} bytes, output scales "
          f"{info.output_scales[0]}/{info.output_scales[1]}, VKA digest {info.vka_digest}")
    return 0


def _params(args: argparse.Namespace) -> int:
    """Show the participation rules, or (owner) change some of them."""
    from dataclasses import asdict

    from aggregator.ledger.incentives import WEI

    rpc, registry_address = _chain(args, _state(args))
    if args.params_command == "set":
        changes = {k: v for k, v in (("min_stake", args.min_stake), ("emission_per_round", args.emission),
                                     ("slash_bps", args.slash_bps), ("bounty_bps", args.bounty_bps),
                                     ("unstake_delay", args.unstake_delay), ("approval_required", args.approval))
                   if v is not None}  # fmt: skip
        if not changes:
            raise UserError("nothing to set: give at least one of --min-stake, --emission, --slash-bps, "
                            "--bounty-bps, --unstake-delay, --approval/--no-approval")
        for name in ("min_stake", "emission_per_round"):
            if name in changes:
                changes[name] = _amount(changes[name], "--" + name.replace("_", "-").replace("-per-round", ""))
        registry = _registry(rpc, registry_address, read_key(args.owner_key_file, OWNER_KEY_ENV, "owner"))
        try:
            receipt = registry.set_params(**changes)
        except ValueError as err:
            raise UserError(str(err)) from None
        print(f"parameters changed (tx 0x{bytes(receipt['transactionHash']).hex()})")
    else:
        registry = _registry(rpc, registry_address)
    p = asdict(registry.params())
    print(f"participation rules of registry {registry.address} (chain {registry.chain_id}):\n"
          f"  min stake          {p['min_stake'] / WEI:g} ETH ({p['min_stake']} wei)\n"
          f"  emission per round {p['emission_per_round'] / WEI:g} ZK0\n"
          f"  slash              {p['slash_bps'] / 100:g} % of the stake per bad proof, "
          f"{p['bounty_bps'] / 100:g} % of it to the slasher\n"
          f"  unstake delay      {p['unstake_delay']} round(s)\n"
          f"  approval required  {'yes (permissioned)' if p['approval_required'] else 'no (stake alone admits)'}")
    return 0


def _amount(text: str, flag: str) -> int:
    from contracts import parse_amount

    try:
        return parse_amount(text)
    except ValueError as err:
        raise UserError(f"bad {flag}: {err}") from None


def _slash(args: argparse.Namespace) -> int:
    """Submit kept evidence of a bad proof to slashBadProof (anyone may: the contract checks everything)."""
    from aggregator.ledger.incentives import evidence_files, read_evidence, slash, tokens

    paths = [Path(p) for p in args.evidence]
    files = [f for p in paths for f in (evidence_files(p) if p.is_dir() else [p])]
    if not files:
        raise UserError(f"no evidence files in {', '.join(map(str, paths))} (a run keeps them in <out>/evidence)")
    evidence = [read_evidence(f) for f in files]
    state = _state(args)
    rpc = args.chain_rpc or state.get("chain_rpc")
    if not rpc:
        raise UserError("which chain? give --chain-rpc URL (or run zk0agg start with it)")
    key = read_key(args.slasher_key_file, AGGREGATOR_KEY_ENV, "slasher")
    for item in evidence:
        registry = _registry(rpc, args.registry or item.registry, key)
        result = slash(registry, item)
        print(f"slashed {result['node']} for its bad proof of round {result['round']}: {tokens(result['amount'])} ETH "
              f"of its stake, bounty {tokens(result['bounty'])} ETH to {registry.sender.address} "
              f"(tx {result['tx_hash']}, gas {result['gas']})")
    return 0


def _fixtures(args: argparse.Namespace) -> int:
    from aggregator.tools.fixtures import sim_fixtures, synthetic_fixtures

    if args.nodes < 1:
        raise UserError("--nodes must be at least 1")
    out = Path(args.out)
    fixtures = (synthetic_fixtures(out, args.nodes, args.episodes, args.frames) if args.data == "synthetic"
                else sim_fixtures(out, args.nodes, args.episodes))
    for i, uri in enumerate(fixtures.nodes):
        print(f"node {i}: {uri}")
    print(f"held-out: {fixtures.heldout}")
    print(f"validation: {fixtures.validation}")
    return 0


def _deploy_registry(args: argparse.Namespace) -> int:
    from eth_account import Account
    from web3 import Web3

    from contracts import Registry, connect

    owner_key = read_key(args.owner_key_file, OWNER_KEY_ENV, "owner")
    if args.aggregator:
        if not Web3.is_address(args.aggregator):
            raise UserError(f"bad --aggregator address {args.aggregator!r}")
        aggregator = Web3.to_checksum_address(args.aggregator)
    else:
        aggregator = Account.from_key(read_key(args.aggregator_key_file, AGGREGATOR_KEY_ENV, "aggregator")).address
    registry = Registry.deploy(connect(args.chain_rpc), owner_key, aggregator)
    print(registry.address)
    print(f"registry deployed on chain {registry.chain_id} at {args.chain_rpc}: owner "
          f"{Account.from_key(owner_key).address}, aggregator {aggregator}", file=sys.stderr)
    return 0


def _explorer(args: argparse.Namespace) -> int:
    """The contribution explorer: a read-only web page of the registry, until Ctrl-C."""
    from aggregator.explorer import ChainReader, ExplorerConfig, NotARegistry, serve
    from contracts import ChainUnavailable

    state = _state(args)
    rpc, registry = args.rpc or state.get("chain_rpc"), args.registry or state.get("registry")
    if not rpc or not registry:
        raise UserError("which chain? give --rpc URL and --registry ADDRESS (or run zk0agg start with them)")
    config = ExplorerConfig(rpc_url=rpc, registry=registry, outputs=args.outputs or "", refresh=args.refresh)
    try:  # say at once what the pages would say; serve anyway: the chain may come (back) later
        ChainReader(config).registry()
    except (ChainUnavailable, NotARegistry) as err:
        print(f"zk0agg: warning: {err}", file=sys.stderr)
    print(f"zk0 explorer of registry {config.registry} on {rpc}: http://{args.host}:{args.port}/  (Ctrl-C stops it)",
          flush=True)
    serve(config, args.host, args.port)
    return 0


# ----------------------------------------------------------------------------------------------- status


def _status(args: argparse.Namespace) -> int:
    """What runs: SuperLink, runs, nodes, rounds, pending chain operations, verifier. Exit 1 when nothing runs."""
    from aggregator.tools.status import aggregator_status

    s = aggregator_status(args.state_dir)
    if not s.started:
        print(f"nothing runs: no aggregator was started with --state-dir {args.state_dir} ({s.state_file} "
              "missing); start one with zk0agg start")
        return 1
    process = "alive" if s.process_alive else "NOT RUNNING"
    print(f"zk0agg start (pid {s.pid}): {process}\n"
          f"  superlink {s.superlink}: {'up' if s.superlink_up else 'DOWN'}"
          f"{' (' + s.superlink_error + ')' if s.superlink_error else ''}")
    if s.superlink_up:
        online = ": " + ", ".join(map(str, s.nodes_online)) if s.nodes_online else ""
        print(f"  nodes     {len(s.nodes_online)} connected{online} ({s.nodes_known} known to the SuperLink)")
        active = s.active_runs
        print(f"  runs      {len(s.runs)} in all, {len(active)} going" + ("" if active else ": no run is going"))
        for r in s.runs:
            progress = ""
            if r.rounds_done is not None:
                progress = (f", round {min(r.rounds_done + 1, r.rounds or r.rounds_done + 1)} of {r.rounds}"
                            if r.active else f", {r.rounds_done} of {r.rounds} round(s) done")
            chain = ""
            if r.pending_chain_ops is not None:
                chain = f", chain operations pending {r.pending_chain_ops}" + (
                    f", FAILED {r.failed_chain_ops}" if r.failed_chain_ops else "")
            print(f"    run {r.run_id}: {r.status}{progress}{chain}; app {r.fab_hash[:12]}…; "
                  f"outputs {r.out_dir or '-'}")
    print(f"  chain     {s.chain}\n  verifier  {s.verifier}")
    print("  logs      " + (", ".join(s.logs) or "-"))
    if not s.superlink_up:
        print("nothing runs: the SuperLink does not answer" + ("" if s.process_alive else
                                                              " (zk0agg start has exited; see its logs)"))
        return 1
    return 0


# ----------------------------------------------------------------------------------------------- release, provenance


def _release(args: argparse.Namespace) -> int:
    from aggregator.tools.release import build_release, push_release

    if args.push and not args.repo_id:
        raise UserError("--push needs --repo-id ORG/NAME (the Hub model repo to create or update)")
    release = build_release(args.run, args.out, args.round, datasets=args.dataset, license_=args.license)
    p = release.provenance
    print(f"release of round {release.round} of {p['run_id']} in {release.out}\n"
          f"  model hash   {release.model_hash}\n"
          f"  closeRound   {p['close_round_tx'] or '- (unverified run)'} (chain {p['chain_id']}, "
          f"registry {p['registry']})\n"
          f"  contributors {sum(c['status'] == 'SELECTED' for c in p['contributors'])} selected of "
          f"{len(p['contributors'])} verified\n"
          f"  datasets     {', '.join(release.datasets) or 'none named'}\n"
          f"check it: zk0agg verify-model {release.out} --chain-rpc URL --registry {p['registry']}")
    if args.push:
        print(f"pushed to https://huggingface.co/{args.repo_id}: {push_release(release.out, args.repo_id)}")
    return 0


def _verify_model(args: argparse.Namespace) -> int:
    """Recompute the model's hash, find the round that closed with it on chain; exit 1 if none did."""
    import json

    from rich.console import Console
    from rich.table import Table

    from aggregator.ledger.provenance import checkpoint_dir, find_provenance, initial_model_round, model_hash
    from aggregator.tools.release import PROVENANCE_FILE

    folder = checkpoint_dir(args.path)
    claimed = json.loads((folder / PROVENANCE_FILE).read_text()) if (folder / PROVENANCE_FILE).is_file() else {}
    state = _state(args)
    rpc = args.chain_rpc or state.get("chain_rpc")
    registry_address = args.registry or state.get("registry") or claimed.get("registry")
    if not rpc or not registry_address:
        raise UserError("which chain? give --chain-rpc URL and --registry ADDRESS (the federation's published "
                        "registry)")
    if not (args.registry or state.get("registry")):
        print(f"note: registry {registry_address} is the one the release itself names: check that it is the "
              "federation's published registry", file=sys.stderr)
    digest = model_hash(folder)
    registry = _registry(rpc, registry_address)
    found = find_provenance(registry, digest)
    if found is None:
        started = initial_model_round(registry, digest)
        why = (f"it is the model round {started} started from, not one a round produced" if started else
               "no round of this registry closed with this model: it was changed, or it comes from elsewhere")
        print(f"zk0agg: refused: {folder} hashes to {digest}; {why} (registry {registry.address}, chain "
              f"{registry.chain_id})", file=sys.stderr)
        return 1
    console = Console()
    console.print(f"[bold green]verified[/]: {folder} is the model round {found.round} closed with\n"
                  f"  model hash   {digest}\n"
                  f"  chain        {found.chain_id}, registry {found.registry}\n"
                  f"  run          {found.run_id}\n"
                  f"  round        {found.round}, started from {found.global_hash}, circuit {found.circuit_id}\n"
                  f"  openRound    {found.open_tx or '-'}\n"
                  f"  closeRound   {found.close_tx} (block {found.close_block})"
                  + (f"\n  kept unchanged by round(s) {', '.join(map(str, found.kept_by))} (no quorum)"
                     if found.kept_by else ""))
    table = Table(title=f"round {found.round}: {len(found.selected)} selected update(s) averaged into this model",
                  title_justify="left")
    for column in ("node", "status", "reason", "signed", "loss before → after", "update hash", "proof hash",
                   "record tx"):
        table.add_column(column, no_wrap=column in ("node", "record tx"))
    for r in found.records:
        table.add_row(r.node, r.status, r.reason if r.reason != "NONE" else "", "yes" if r.signed else "no",
                      f"{r.loss_before:.4f} → {r.loss_after:.4f}" if r.signed else "-", r.update_hash[:10] + "…",
                      r.proof_hash[:10] + "…" if r.signed else "-", r.tx_hash or "-")
    console.print(table)
    if claimed and (claimed.get("round"), claimed.get("close_round_tx")) != (found.round, found.close_tx):
        print(f"zk0agg: warning: {PROVENANCE_FILE} claims round {claimed.get('round')} / transaction "
              f"{claimed.get('close_round_tx')}; the chain says round {found.round} / {found.close_tx}",
              file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------- parser


def _chain_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chain-rpc", metavar="URL", help="Ethereum JSON-RPC endpoint (default: from zk0agg start)")
    parser.add_argument("--registry", metavar="ADDRESS",
                        help="ContributionRegistry address (default: from zk0agg start)")


def _state_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=str(STATE_DIR),
                        help=f"where zk0agg start keeps its state and logs (default {STATE_DIR})")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="zk0agg", description="zk0 aggregator: run and inspect a verifiable "
                                     "federation of SO-100 robot policies.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Flower's and LeRobot's own logs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a whole federation on this machine (offline fixtures)")
    demo.add_argument("--nodes", type=at_least(1), default=3, help="number of nodes (default 3)")
    demo.add_argument("--rounds", type=at_least(1), default=3, help="federated rounds (default 3)")
    demo.add_argument("--out", help="output folder (default outputs/demo-<time>)")
    demo.add_argument("--engine", choices=["simulation", "deployment"], default="simulation",
                      help="Flower's simulation engine (default), or real SuperLink + SuperNode processes on loopback")
    demo.add_argument("--local-steps", type=at_least(1), default=20,
                      help="training steps per node per round (default 20)")
    demo.add_argument("--krum-f", type=at_least(0), default=0, help="Byzantine nodes Krum tolerates (default 0)")
    demo.add_argument("--krum-m", type=at_least(1), default=2, help="updates MultiKrum averages (default 2; 1 = Krum)")
    demo.add_argument("--adversary", metavar="ATTACK",  # checked by DemoConfig (the attacks package loads torch)
                      help="turn the last node adversarial: sign-flip, forge-proof, fabricate-witness, replay, … "
                      "(docs/security.md lists them); use with --nodes 5 --krum-f 1")
    demo.add_argument("--data", choices=["sim", "synthetic"], default="sim",
                      help="node datasets: MuJoCo scripted-expert demonstrations (default) or the synthetic generator")
    demo.add_argument("--episodes", type=at_least(1), default=4, help="episodes per node dataset (default 4)")
    demo.add_argument("--model", default="learn",
                      help="SmolVLA spec: learn (default: trains its vision; can learn reach), tiny, local:<dir>, ...")
    demo.add_argument("--task", choices=["reach", "pick_place"], default="reach",
                      help="simulated task the nodes record and the server evaluates in closed loop (default reach)")
    demo.add_argument("--eval-episodes", type=at_least(0), default=2,
                      help="closed-loop held-out episodes in the simulator after each round (default 2; 0 = off)")
    demo.add_argument("--eval-max-steps", type=at_least(1), default=150,
                      help="step limit of a closed-loop episode (default 150, 5 s at 30 Hz)")
    demo.add_argument("--no-verify", action="store_true", help="plain Krum federation: no proofs, signatures, chain")
    demo.add_argument("--stake", type=float, default=1.0, metavar="ETH",
                      help="ETH each node wallet stakes, the registry's min stake (default 1; 0: approval alone)")
    demo.add_argument("--no-validation", action="store_true",
                      help="no validation set: updates are not scored (the gate as it was before HARMFUL)")
    demo.add_argument("--dp-epsilon", type=float, metavar="EPS",
                      help="client-side differential privacy: each node's privacy budget ε over the run's rounds at "
                      "δ = 1e-5 (the noise is calibrated to it; docs/privacy.md)")
    demo.add_argument("--dp-noise-multiplier", type=float, metavar="SIGMA", help="DP noise multiplier σ, instead "
                      "of --dp-epsilon")
    demo.add_argument("--dp-clip", type=float, metavar="C", help="DP clipping bound C of an update's L2 norm "
                      "(default 0.01 with DP; alone: clipping without noise)")
    _wandb_flag(demo)
    demo.set_defaults(func=_demo)

    start = sub.add_parser(
        "start", help="run the federation's SuperLink (and optionally the verifier service) until stopped",
        description="Run Flower's SuperLink for this federation until Ctrl-C: nodes connect to it, zk0agg run submits "
        "runs to it. Its ServerApp processes run only the pinned app bundle and get the aggregator key through "
        f"their environment ({AGGREGATOR_KEY_ENV}), never through the run config that every node receives.")
    start.add_argument("--host", help="address to listen on (default 0.0.0.0; 127.0.0.1 with --insecure)")
    start.add_argument("--port", type=port, default=9092,
                       help="the one port of the Fleet (nodes), Control (runs) and Runtime APIs (default 9092)")
    start.add_argument("--insecure", action="store_true", help="no TLS: loopback development only")
    start.add_argument("--ssl-certfile", type=Path, metavar="CERT", help="the SuperLink's TLS certificate (PEM)")
    start.add_argument("--ssl-keyfile", type=Path, metavar="KEY", help="its private key (PEM)")
    start.add_argument("--ssl-ca-certfile", type=Path, metavar="CA",
                       help="the CA certificate that signed it (nodes get this file as --root-certificates)")
    start.add_argument("--validation", metavar="URI",
                       help="the validation set every update is scored on (local:PATH or hf:REPO): data no node "
                       "trains on, other than the held-out set; without it updates are not scored")
    start.add_argument("--enable-supernode-auth", action="store_true",
                       help="accept only SuperNodes whose public keys were registered (flwr supernode register)")
    _chain_flags(start)
    start.add_argument("--aggregator-key-file", metavar="FILE",
                       help=f"the registry's aggregator key (default: env {AGGREGATOR_KEY_ENV})")
    start.add_argument("--app-hash", action="append", default=[], metavar="SHA256",
                       help="app bundle(s) the ServerApp may run (default: the bundle of this zk0 source tree)")
    start.add_argument("--verifier-url", metavar="URL",
                       help="a running zk0agg verifier serve, or several, comma-separated, sharing one token "
                       f"(--verifier-token-file or {VERIFIER_TOKEN_ENV})")
    start.add_argument("--verifier-token-file", metavar="FILE", help="bearer token of --verifier-url")
    start.add_argument("--verifier-circuit", action="append", metavar="DIR",
                       help="start the verifier service here for this circuit folder (repeatable)")
    start.add_argument("--verifier-srs", metavar="FILE", help="SRS file for --verifier-circuit")
    start.add_argument("--verifier-srs-dev", action="store_true", help="the verifier's SRS is a development one")
    start.add_argument("--verifier-port", type=port, default=8470, help="port of the started verifier (default 8470)")
    start.add_argument("--onchain-verify", action="store_true",
                       help="the registry also verifies each signed reply's proof (EZKL's verifier contract)")
    start.add_argument("--outputs", default="outputs", metavar="DIR",
                       help="runs not submitted by zk0agg run write under DIR/flwr-run-<id> (default outputs)")
    _state_flag(start)
    start.set_defaults(func=_start)

    run = sub.add_parser("run", help="submit a federated run to the SuperLink and follow it to its end",
                         description="Bundle the zk0 app, submit it with the run config to the SuperLink (what "
                         "flwr run does), stream the ServerApp's log until the run ends. Paths are on the "
                         "aggregator's machine.")
    run.add_argument("--rounds", type=at_least(1), default=3, help="federated rounds (default 3)")
    run.add_argument("--heldout", required=True, metavar="URI", help="the server's held-out dataset (local:<path>)")
    run.add_argument("--min-nodes", type=at_least(1), default=3, help="nodes a round waits for (default 3)")
    run.add_argument("--local-steps", type=at_least(1), default=20,
                     help="training steps per node per round (default 20)")
    run.add_argument("--krum-f", type=at_least(0), default=0, help="Byzantine nodes Krum tolerates (default 0)")
    run.add_argument("--krum-m", type=at_least(1), default=2, help="updates MultiKrum averages (default 2)")
    run.add_argument("--fraction-evaluate", type=fraction, default=1.0,
                     help="share of nodes that also evaluate each round (default 1.0)")
    run.add_argument("--srs", default="dev", metavar="FILE|dev", help="the federation's SRS (default dev)")
    run.add_argument("--out", help="output folder (default outputs/run-<time>)")
    run.add_argument("--cache-dir", default=".zk0/fixtures", help="model and circuit cache (default .zk0/fixtures)")
    run.add_argument("--no-verify", action="store_true", help="plain Krum run: no proofs, signatures, chain")
    run.add_argument("--timeout", type=at_least(1, float), default=600.0,
                     help="seconds a round waits for replies (default 600)")
    run.add_argument("-c", "--run-config", action="append", metavar="KEY=VALUE",
                     help="any other run-config key of the app (repeatable), e.g. -c slice-rows=16")
    run.add_argument("--app", metavar="DIR", help="zk0 source tree to bundle (default: this one)")
    run.add_argument("--fab", metavar="FILE", help="submit this app bundle (flwr build output) instead of bundling")
    run.add_argument("--resume", action="store_true", help="continue the run in --out (summary, checkpoint, journal)")
    run.add_argument("--detach", action="store_true", help="submit and return; follow later with flwr log")
    run.add_argument("--superlink", metavar="HOST:PORT", help="the SuperLink (default: from zk0agg start)")
    run.add_argument("--insecure", action="store_true", help="plain-text connection (loopback development)")
    run.add_argument("--root-certificates", type=Path, metavar="CA", help="CA certificate of the SuperLink")
    _wandb_flag(run)
    _state_flag(run)
    run.set_defaults(func=_run)

    approve = sub.add_parser("approve", help="approve a node's wallet address in the registry (owner only)")
    approve.add_argument("address", help="the node's address (zk0node wallet show prints it)")
    approve.add_argument("--revoke", action="store_true", help="revoke instead (takes effect from the next round)")
    approve.add_argument("--owner-key-file", metavar="FILE",
                         help=f"registry owner's key (default: env {OWNER_KEY_ENV})")
    _chain_flags(approve)
    _state_flag(approve)
    approve.set_defaults(func=_approve)

    contrib = sub.add_parser("contributions", help="read the recorded contributions back from the chain")
    contrib.add_argument("--round", type=at_least(1), help="only this round")
    contrib.add_argument("--run", metavar="RUN_ID", help="only this run (its id on the registry, or a prefix of it: "
                         "summary.json's chain.run_id)")
    contrib.add_argument("--node", metavar="ADDRESS", help="only this node's records")
    _chain_flags(contrib)
    _state_flag(contrib)
    contrib.set_defaults(func=_contributions)

    register = sub.add_parser("register-circuit", help="deploy the EZKL verifier and register the federation's "
                              "circuit in the registry (owner only; once: a second time reuses it)",
                              description="Build the circuit a run with these settings uses, its reusable Solidity "
                              "verifier and VKA, deploy the verifier and call registerCircuit: from then on the chain "
                              "can verify the circuit's proofs (on-chain verification) and slash a signed bad proof.")
    register.add_argument("--dataset", required=True, metavar="URI",
                          help="a dataset with the federation's features, e.g. the held-out set (local:PATH)")
    register.add_argument("--model", default="tiny", help="the run's model (default tiny)")
    register.add_argument("--slice-rows", type=int, default=16, help="the run's slice-rows (default 16)")
    register.add_argument("--srs", default="dev", metavar="FILE|dev", help="the federation's SRS (default dev)")
    register.add_argument("--cache-dir", default=".zk0/fixtures", help="model and circuit cache (default "
                          ".zk0/fixtures)")
    register.add_argument("--owner-key-file", metavar="FILE",
                          help=f"registry owner's key (default: env {OWNER_KEY_ENV})")
    _chain_flags(register)
    _state_flag(register)
    register.set_defaults(func=_register_circuit)

    params = sub.add_parser("params", help="the federation's participation rules: min stake, emission, slashing, "
                            "unstake delay, approval")
    params_sub = params.add_subparsers(dest="params_command", required=True)
    show = params_sub.add_parser("show", help="print the rules as the registry has them")
    _chain_flags(show)
    _state_flag(show)
    show.set_defaults(func=_params)
    pset = params_sub.add_parser("set", help="change some rules (owner only); the others stay")
    pset.add_argument("--min-stake", metavar="ETH", help="stake a wallet needs to take part (e.g. 1.5, or 10wei)")
    pset.add_argument("--emission", metavar="ZK0", help="reward tokens each round opened from now on shares out")
    pset.add_argument("--slash-bps", type=int, metavar="BPS", help="share of the stake a bad proof loses (basis "
                      "points: 5000 = 50 %%)")
    pset.add_argument("--bounty-bps", type=int, metavar="BPS", help="share of the slashed amount paid to the "
                      "slasher (basis points; the rest is burned)")
    pset.add_argument("--unstake-delay", type=int, metavar="ROUNDS",
                      help="rounds that must open between an unstake request and the withdrawal")
    pset.add_argument("--approval", action=argparse.BooleanOptionalAction, default=None,
                      help="permissioned: the owner approves each wallet too (--no-approval: stake alone admits)")
    pset.add_argument("--owner-key-file", metavar="FILE", help=f"registry owner's key (default: env {OWNER_KEY_ENV})")
    _chain_flags(pset)
    _state_flag(pset)
    pset.set_defaults(func=_params)

    slash = sub.add_parser("slash", help="submit the evidence of a bad proof (a run's evidence/ files): the signer's "
                           "stake is slashed, a bounty paid to the sender",
                           description="slashBadProof: the contract recovers the node's signature, checks the proof "
                           "is the one it signed and runs the circuit's verifier; only a proof that fails is "
                           "slashed, once. Anyone may send it; the sender gets the bounty.")
    slash.add_argument("--evidence", required=True, action="append", metavar="FILE|DIR",
                       help="an evidence file (<out>/evidence/round_<r>/<address>.json) or a folder of them "
                       "(repeatable)")
    slash.add_argument("--slasher-key-file", metavar="FILE",
                       help=f"the sending account's key (default: env {AGGREGATOR_KEY_ENV})")
    _chain_flags(slash)
    _state_flag(slash)
    slash.set_defaults(func=_slash)

    explorer = sub.add_parser("explorer", help="serve a read-only web page of the federation, read from the chain",
                              description="Serve the contribution explorer: rounds, replies, wallets and parameters "
                              "read from the registry's events and views; eval loss and success rate per round from "
                              "a run's outputs folder when given. It only reads: no key is needed.")
    explorer.add_argument("--rpc", "--chain-rpc", dest="rpc", metavar="URL",
                          help="Ethereum JSON-RPC endpoint (default: from zk0agg start)")
    explorer.add_argument("--registry", metavar="ADDRESS",
                          help="ContributionRegistry address (default: from zk0agg start)")
    explorer.add_argument("--outputs", metavar="DIR", help="a run's outputs folder (its summary.json: eval loss, "
                          "success rate, SRS digest)")
    explorer.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    explorer.add_argument("--port", type=int, default=8480, help="port to listen on (default 8480)")
    explorer.add_argument("--refresh", type=float, default=5.0,
                          help="seconds between the page's refreshes (default 5; 0 = off)")
    _state_flag(explorer)
    explorer.set_defaults(func=_explorer)

    chain = sub.add_parser("chain", help="a local development chain (anvil)")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True)
    chain_sub.add_parser("up", help="run anvil until Ctrl-C (zk0agg chain up --help for its flags)")

    verifier = sub.add_parser("verifier", help="the stateless proof verification service")
    verifier_sub = verifier.add_subparsers(dest="verifier_command", required=True)
    verifier_sub.add_parser("serve", help="serve POST /v1/verify (zk0agg verifier serve --help for its flags)")

    fixtures = sub.add_parser("fixtures", help="build offline node datasets and a held-out set")
    fixtures.add_argument("--nodes", type=at_least(1), default=3, help="node datasets (default 3)")
    fixtures.add_argument("--out", required=True, metavar="DIR", help="folder for the datasets")
    fixtures.add_argument("--data", choices=["synthetic", "sim"], default="synthetic",
                          help="synthetic generator (default, seconds) or MuJoCo expert demonstrations (minutes)")
    fixtures.add_argument("--episodes", type=at_least(1), default=4, help="episodes per dataset (default 4)")
    fixtures.add_argument("--frames", type=at_least(2), default=30, help="frames per synthetic episode (default 30)")
    fixtures.set_defaults(func=_fixtures)

    deploy = sub.add_parser("deploy-registry", help="deploy the ContributionRegistry and print its address")
    deploy.add_argument("--chain-rpc", required=True, metavar="URL", help="Ethereum JSON-RPC endpoint")
    deploy.add_argument("--owner-key-file", metavar="FILE",
                        help=f"deployer = owner key (approves nodes; default: env {OWNER_KEY_ENV})")
    deploy.add_argument("--aggregator", metavar="ADDRESS",
                        help="the aggregator's address (default: from --aggregator-key-file / "
                        f"{AGGREGATOR_KEY_ENV})")
    deploy.add_argument("--aggregator-key-file", metavar="FILE", help="the aggregator's key, to derive its address")
    deploy.set_defaults(func=_deploy_registry)

    status = sub.add_parser("status", help="what runs: the SuperLink, its runs and connected nodes, the current "
                            "round, pending chain operations, the verifier (exit 1 when nothing runs)")
    _state_flag(status)
    status.set_defaults(func=_status)

    release = sub.add_parser("release", help="a round's global model as a Hugging Face Hub-ready folder, with "
                             "a model card and its on-chain provenance")
    release.add_argument("--run", required=True, metavar="DIR", help="the run's output folder (outputs/<run>)")
    release.add_argument("--round", type=int, help="the round whose model to release (default: the last one)")
    release.add_argument("--out", required=True, metavar="DIR", help="the release folder to write (new or empty)")
    release.add_argument("--dataset", action="append", default=[], metavar="ORG/NAME",
                         help="a Hub dataset to name in the card, only for a contributor who agreed to be named "
                         "(repeatable; default: none named)")
    release.add_argument("--license", default="apache-2.0", help="the model's license in the card (default "
                         "apache-2.0)")
    release.add_argument("--repo-id", metavar="ORG/NAME", help="the Hub model repo for --push")
    release.add_argument("--push", action="store_true", help="upload the folder to the Hub (token: HF_TOKEN or "
                         "huggingface-cli login)")
    release.set_defaults(func=_release)

    verify_model = sub.add_parser("verify-model", help="check on chain which round produced a model (a release "
                                  "folder or a checkpoint); refuses a model no round produced")
    verify_model.add_argument("path", help="a release folder or checkpoint (config.json + model.safetensors)")
    _chain_flags(verify_model)
    _state_flag(verify_model)
    verify_model.set_defaults(func=_verify_model)
    return parser


def _delegated(argv: list[str]) -> int | None:
    """``chain up`` and ``verifier serve`` have parsers of their own: hand them the rest of the line."""
    if argv[:2] == ["chain", "up"]:
        from contracts.local_chain import main as chain_main

        return chain_main(argv[2:])
    if argv[:2] == ["verifier", "serve"]:
        from aggregator.verifier.service import serve_main

        return serve_main(argv[2:])
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = _delegated(argv)
    if delegated is not None:
        return delegated
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
