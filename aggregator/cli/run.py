"""``zk0agg run``: submit a federated run to the SuperLink that ``zk0agg start`` runs, and follow it to its end."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aggregator.cli.common import (
    add_state_flag,
    add_wandb_flag,
    check_dataset,
    dataset_uri,
    start_state,
    superlink_of,
    wandb_wanted,
)
from aggregator.config import SELECTIONS, SERVER_OPTIMIZERS
from aggregator.operator import ENDPOINT_KEYS, VERDICT_KEYS
from node.cliargs import add_command, at_least, fraction
from node.errors import UserError
from node.logs import tee_output


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = add_command(sub, "run", _run, help="submit a federated run to the SuperLink and follow it to its end",
                      description="Bundle the zk0 app, submit it with the run config to the SuperLink (what "
                      "flwr run does), stream the ServerApp's log until the run ends. Paths are on the "
                      "aggregator's machine.")
    run.add_argument("--rounds", type=at_least(1), default=3, help="federated rounds (default 3)")
    run.add_argument("--model", default="learn", help="SmolVLA spec the nodes train: learn (default, as the demo: "
                     "trains its vision), tiny (fast, cannot see), local:<dir>, ...; the circuit registered with "
                     "zk0agg register-circuit must be for the same model")
    run.add_argument("--task", choices=["reach", "pick_place"], default="reach",
                     help="simulated task of the closed-loop evaluation (-c sim-eval-episodes=N; default reach)")
    run.add_argument("--heldout", required=True, metavar="URI", type=dataset_uri,
                     help="the server's held-out dataset (local:<path>, relative to this folder, or hf:<repo>)")
    run.add_argument("--min-nodes", type=at_least(1), default=3, help="nodes a round waits for (default 3)")
    run.add_argument("--local-steps", type=at_least(1), default=20,
                     help="training steps per node per round (default 20)")
    run.add_argument("--krum-f", type=at_least(0), default=0, help="Byzantine nodes Krum tolerates (default 0)")
    run.add_argument("--krum-m", type=at_least(1), default=2, help="updates MultiKrum averages (default 2)")
    run.add_argument("--harm-tolerance", type=at_least(0, float), metavar="TAU",
                     help="a score below -TAU is HARMFUL (default: measured for --model, node/thresholds.py)")
    run.add_argument("--rise-tolerance", type=at_least(0, float), metavar="RHO",
                     help="a proven loss rising by more than RHO (a fraction) is NO_IMPROVEMENT (default: measured)")
    run.add_argument("--min-gain", type=at_least(0, float), metavar="G",
                     help="a reply is averaged in only above G x the validation loss (default: measured)")
    run.add_argument("--lora-rank", type=at_least(0), default=0, metavar="R",
                     help="LoRA mode: nodes train and send rank-R adapters, the base stays fixed (default 0: off)")
    run.add_argument("--selection", choices=SELECTIONS, default="usefulness",
                     help="weigh useful replies by score (usefulness, default) or Multi-Krum's m best (multikrum)")
    run.add_argument("--server-optimizer", choices=SERVER_OPTIMIZERS, default="none",
                     help="the server's step along the verified mean: none (the mean, default), avgm (FedAvgM), "
                     "adam (FedAdam)")
    run.add_argument("--server-lr", type=at_least(0, float), default=1.0, help="the server step's lr η (default 1)")
    run.add_argument("--server-momentum", type=fraction, default=0.9,
                     help="FedAvgM's momentum β, FedAdam's β1 (default 0.9)")
    run.add_argument("--fraction-evaluate", type=fraction, default=1.0,
                     help="share of nodes that also evaluate each round (default 1.0)")
    run.add_argument("--srs", default="dev", metavar="FILE|dev", help="the federation's SRS (default dev)")
    run.add_argument("--out", help="output folder (default outputs/run-<time>)")
    run.add_argument("--cache-dir", default=".zk0/fixtures", help="model and circuit cache (default .zk0/fixtures)")
    run.add_argument("--no-verify", action="store_true", help="plain Krum run: no proofs, signatures, chain")
    run.add_argument("--timeout", type=at_least(1, float), default=600.0,
                     help="seconds a round waits for replies (default 600)")
    run.add_argument("-c", "--run-config", action="append", metavar="KEY=VALUE",
                     help="any other run-config key of the app (repeatable), e.g. -c slice-rows=16; a verdict "
                     "setting given so (-c min-gain=0.02) goes to the run's operator file like its flag")
    run.add_argument("--app", metavar="DIR", help="zk0 source tree to bundle (default: this one)")
    run.add_argument("--fab", metavar="FILE", help="submit this app bundle (flwr build output) instead of bundling")
    run.add_argument("--resume", action="store_true", help="continue the run in --out (summary, checkpoint, journal)")
    run.add_argument("--detach", action="store_true", help="submit and return; follow later with flwr log")
    run.add_argument("--superlink", metavar="HOST:PORT", help="the SuperLink (default: from zk0agg start)")
    run.add_argument("--insecure", action="store_true", help="plain-text connection (loopback development)")
    run.add_argument("--root-certificates", type=Path, metavar="CA", help="CA certificate of the SuperLink")
    add_wandb_flag(run)
    add_state_flag(run)


def _run(args: argparse.Namespace) -> int:
    from aggregator.config import FederationConfig
    from aggregator.run_folder import check_run_paths
    from aggregator.tools.deploy import run_config, submit_operator_run
    from node.trust import bundle_hash

    out_dir = str(Path(args.out or time.strftime("outputs/run-%Y%m%d-%H%M%S")).resolve())
    check_run_paths(out_dir, args.resume)  # first: a bad --out fails before anything is contacted
    state = start_state(args)
    address, insecure, ca = superlink_of(args, state)
    if not state.get("operator_file"):
        raise UserError(f"no zk0agg start state in {args.state_dir}: zk0agg run submits to the SuperLink that zk0agg "
                        "start runs on this machine (give its --state-dir)")
    if not args.no_verify and not state.get("chain_rpc"):
        raise UserError("the aggregator was started without a chain: zk0agg start --chain-rpc URL --registry "
                        "ADDRESS, or zk0agg run --no-verify")
    extra, verdicts = _run_settings(args.run_config)
    gate = {name: value for name in ("harm_tolerance", "rise_tolerance", "min_gain")
            if (value := getattr(args, name)) is not None}  # unset: the model's measured thresholds
    fed = FederationConfig(**{"rounds": args.rounds, "min_nodes": args.min_nodes, "krum_f": args.krum_f,
                              "krum_m": args.krum_m, "selection": args.selection,
                              "server_optimizer": args.server_optimizer, "server_lr": args.server_lr,
                              "server_momentum": args.server_momentum, "lora_rank": args.lora_rank,
                              **gate, **verdicts},
                           model=extra.get("model", args.model), sim_task=args.task, local_steps=args.local_steps,
                           fraction_evaluate=args.fraction_evaluate, heldout=args.heldout, timeout=args.timeout,
                           wandb=wandb_wanted(args))
    # this run's operator settings: written on this machine for its ServerApp, never sent in the run config; the
    # file is also what makes the run the operator's (a run without one is refused: aggregator.operator)
    settings = {"out_dir": out_dir, "resume": args.resume, "verify": not args.no_verify,
                "cache_dir": str(Path(args.cache_dir).resolve()),
                "srs": args.srs if args.srs == "dev" else str(Path(args.srs).resolve()),
                **{name: getattr(fed, name) for name in VERDICT_KEYS}}
    fab = _app_bundle(args)
    config = {**run_config(fed, fab), **extra}
    verdict = {name: settings[name] for name in VERDICT_KEYS}  # every run value checked as the ServerApp will, first
    FederationConfig.from_run_config(config, environ={}, operator=verdict)
    _check_endpoints(state, settings["verify"])
    check_dataset(args.heldout, "--heldout")
    tee_output(Path(out_dir) / "zk0agg-run.log")
    pinned = state.get("app_hashes")
    if pinned and bundle_hash(fab) not in pinned:
        print(f"zk0agg: warning: bundle {bundle_hash(fab)} is not the one zk0agg start pinned: the SuperLink "
              "will refuse it", file=sys.stderr)
    run_id = submit_operator_run(address, fab, config, Path(state["operator_file"]), settings, insecure, ca)
    print(f"run {run_id} submitted to {address}: app bundle {bundle_hash(fab)}, {fed.rounds} round(s), "
          f"{'verified' if settings['verify'] else 'unverified'}; outputs in {settings['out_dir']}", flush=True)
    if args.detach:
        return 0
    return _follow(address, run_id, insecure, ca, Path(out_dir), args.timeout * (fed.rounds + 1) + 600)


def _follow(address: str, run_id: int, insecure: bool, ca: Path | None, out: Path, timeout: float) -> int:
    """Stream the run's log to its end. Ctrl-C asks the run to stop (``aggregator.run_folder.request_stop``) and
    follows it while it sends its finished rounds to the chain; a second Ctrl-C leaves it stopping on its own."""
    import json

    from aggregator.run_folder import request_stop
    from aggregator.tools.deploy import follow_run

    def stop() -> None:
        request_stop(out)
        print(f"\nCtrl-C: run {run_id} stops at its next step, after its finished rounds reach the chain (Ctrl-C "
              "again leaves it stopping on its own)", file=sys.stderr, flush=True)

    result = follow_run(address, run_id, insecure, ca, on_log=lambda text: print(text, end="", flush=True),
                        timeout=timeout, on_interrupt=stop)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    stopped = summary.get("interrupted_after")
    status = f"stopped after round {stopped}" if stopped is not None else result.status
    print(f"\nrun {run_id} {status}{': ' + result.details if result.details else ''}; summary {summary_path}")
    pending = (summary.get("chain") or {}).get("pending_operations")
    if pending:
        print(f"{pending} chain operation(s) not sent yet: zk0agg sync --out {out} sends them once the chain answers "
              "(or zk0agg run --resume does)")
    if stopped is not None:
        return 130
    return 0 if result.status == "completed" else 1


def _check_endpoints(state: dict, verify: bool) -> None:
    """The chain (for a verified run) and the verifier service answer now: a run is not submitted to fail at its
    start. An outage after this only delays the chain records (the journal keeps them)."""
    if verify:
        from contracts import ChainUnavailable, connect

        try:
            connect(state["chain_rpc"], timeout=10)
        except ChainUnavailable as err:
            raise UserError(f"{err}: start the chain (or wait for it) and run again; nothing was submitted") from None
    if state.get("verifier_url"):
        from aggregator.verifier.client import check_services

        check_services(state["verifier_url"])


def _run_settings(items: list[str] | None) -> tuple[dict, dict]:
    """The ``-c KEY=VALUE`` keys: (run config, verdict settings). A verdict setting (``VERDICT_KEYS``) goes to the
    run's operator file, never the run config; the other operator keys (endpoints, trust, paths, secrets) are
    refused: they have flags of their own."""
    from aggregator.config import SECRET_ENV

    extra = _parse_run_config(items)
    refused = sorted(k for k in extra if k.replace("-", "_") in (*ENDPOINT_KEYS, *SECRET_ENV))
    if refused:
        raise UserError(f"-c {refused[0]}: not a run setting; endpoints, trust settings and paths are the operator's "
                        "(zk0agg start's flags, or this command's --out/--resume/--srs/--cache-dir/--no-verify)")
    verdicts = {k.replace("-", "_"): extra.pop(k) for k in list(extra) if k.replace("-", "_") in VERDICT_KEYS}
    return extra, verdicts


def _parse_run_config(items: list[str] | None) -> dict:
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


def _app_bundle(args: argparse.Namespace) -> bytes:
    """The FAB to submit: ``--fab`` as given, else ``--app`` (default: this source tree) bundled."""
    from node.trust import SOURCE_ROOT, build_app_bundle

    if args.fab:
        try:
            return Path(args.fab).read_bytes()
        except OSError as err:
            raise UserError(f"cannot read app bundle {args.fab}: {err.strerror}") from None
    return build_app_bundle(args.app or SOURCE_ROOT)
