"""``zk0agg demo``: the whole verifiable federation on one machine.

A local chain (anvil) with the registry deployed, one wallet per node (approved by the owner), the dev SRS and
circuit, N nodes on Flower's simulation engine training on offline non-IID SO-100 data, proofs, the gate, Krum,
chain records, server evaluation, and ``summary.json``. ``verify=False`` runs the plain Krum federation.

``engine="deployment"`` runs the same federation on Flower's deployment engine instead: a real SuperLink and one
``zk0node start`` SuperNode process per node on loopback (``aggregator.tools.deploy.LoopbackFederation``), the run
submitted as ``zk0agg run`` does, every process pinned to this source tree's app bundle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from aggregator.config import FederationConfig
from aggregator.run_folder import check_run_paths, request_stop, wait_for_writer
from aggregator.server_app import make_server_app
from aggregator.tools.fixtures import sim_fixtures, synthetic_fixtures
from node.client_app import NodeSetup, make_client_app
from node.errors import UserError

log = logging.getLogger(__name__)

DEMO_PASSWORD = "zk0-demo-only"  # the demo's throwaway keystores; real nodes choose their own


@dataclass
class DemoConfig:
    nodes: int = 3
    rounds: int = 3
    out: str = ""
    cache_dir: str = ".zk0/fixtures"
    episodes: int = 4
    frames: int = 30
    verify: bool = True
    data: str = "sim"  # "sim": MuJoCo expert demonstrations; "synthetic": the fast generator (tests)
    eval_episodes: int = 2  # closed-loop episodes in the simulator after each round (sim data only)
    adversary: str | None = None  # the last node runs this attack
    adversaries: tuple[str, ...] = ()  # or one attack per node, from the last node backwards
    engine: str = "simulation"  # or "deployment": real SuperLink + SuperNode processes on loopback
    app_dir: str = ""  # deployment: the zk0 source tree to bundle (default: the one running)
    warm_clientapp: bool = True  # deployment: each node's warm ClientApp host (zk0node start --cold-clientapp: off)
    validation: bool = True  # score every update on a validation set of its own (the gate's HARMFUL check)
    stake: float = 1.0  # ETH each approved wallet stakes (the registry's min stake); 0: approval alone, no stake

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise UserError("a demo needs at least one node")
        if self.engine not in ("simulation", "deployment"):
            raise UserError(f"unknown engine {self.engine!r}: 'simulation' or 'deployment'")
        if not 0 <= self.stake < 1000:
            raise UserError(f"--stake {self.stake}: give the ETH each wallet stakes, 0 to 1000 (0: no stake)")
        if self.data not in ("sim", "synthetic"):
            raise UserError(f"unknown demo data {self.data!r}: 'sim' or 'synthetic'")
        known = attack_names()
        for kind in [self.adversary, *self.adversaries]:
            if kind and kind not in known:
                raise UserError(f"unknown adversary {kind!r}: choose one of {', '.join(known)}")
        self.out = self.out or time.strftime("outputs/demo-%Y%m%d-%H%M%S")

    def attacks(self) -> list[str | None]:
        """Per node: None (honest) or the attack it runs."""
        kinds = list(self.adversaries) or ([self.adversary] if self.adversary else [])
        if len(kinds) > self.nodes:
            raise UserError(f"{len(kinds)} adversaries for {self.nodes} nodes")
        return [None] * (self.nodes - len(kinds)) + kinds


def attack_names() -> list[str]:
    """The attacks a demo node can run (the test-only ``attacks`` package, loaded only when asked for)."""
    from attacks import ATTACKS

    return [*ATTACKS, "unapproved"]


@dataclass
class DemoChain:
    """The demo's local chain and the keys that act on it (anvil's well-known development keys)."""

    chain: object  # contracts.LocalChain
    registry: str
    owner_key: str
    aggregator_key: str
    wallets: list[str]  # keystore paths, one per node
    addresses: list[str]


def _start_chain(out: Path, nodes: int, console: Console, unapproved: set[int], stake: float) -> DemoChain:
    """anvil + registry + one wallet per node: funded, staked (``stake`` ETH, the min stake) and approved."""
    from eth_account import Account

    from contracts import LocalChain, Registry, connect, create_keystore, load_account, read_address
    from contracts.local_chain import rpc_request

    chain = LocalChain(state_path=out / "anvil-state.json").start()
    owner_key, aggregator_key = chain.private_keys[:2]
    registry = Registry.deploy(connect(chain.rpc_url), owner_key, Account.from_key(aggregator_key).address)
    stake_wei = int(stake * 10**18)
    if stake_wei:
        registry.set_params(min_stake=stake_wei)  # permissioned too: staking alone does not admit a wallet
    wallets, addresses = [], []
    for i in range(nodes):
        path = out / "wallets" / f"node{i}.json"
        address = read_address(path) if path.exists() else create_keystore(path, DEMO_PASSWORD)
        if i not in unapproved:
            if stake_wei:  # a fresh wallet has no ETH: anvil gives it the stake and some gas money
                rpc_request(chain.rpc_url, "anvil_setBalance", [address, hex(stake_wei + 10**18)])
                registry.with_sender(load_account(path, DEMO_PASSWORD).key).stake(stake_wei)
            registry.approve_node(address)
        wallets.append(str(path))
        addresses.append(address)
    staked = f", each staked {stake:g} ETH" if stake_wei else ""
    console.print(f"chain: anvil at {chain.rpc_url} (chain id {chain.chain_id}), registry {registry.address}, "
                  f"{nodes - len(unapproved)} node wallet(s) approved{staked}")
    return DemoChain(chain, registry.address, owner_key, aggregator_key, wallets, addresses)


def _register_circuit(demo: DemoConfig, fed: FederationConfig, demo_chain: DemoChain, heldout: str,
                      console: Console) -> None:
    """The owner registers the run's circuit (EVM verifier + VKA), so the chain can judge its proofs and slash."""
    from aggregator.tools.circuit_registration import ensure_circuit_registered, federation_circuit
    from contracts import Registry, connect

    t0 = time.perf_counter()
    circuit = federation_circuit(fed.model, heldout, fed.slice_rows, fed.srs, demo.cache_dir, fed.seed)
    owner = Registry.at(connect(demo_chain.chain.rpc_url), demo_chain.registry, demo_chain.owner_key)
    info, _ = ensure_circuit_registered(owner, circuit)
    console.print(f"circuit {circuit.circuit_id} registered on chain as {info.circuit_id[:18]}… "
                  f"({time.perf_counter() - t0:.0f}s): reusable "
                  f"EVM verifier {info.verifier}, {proof_sizes(info.proof_length)}")


def proof_sizes(proof_length: int) -> str:
    """What the registration's proof length counts, and what summary.json's ``proof_bytes`` counts instead."""
    return (f"EVM proofs of {proof_length} bytes (nodes send each as a JSON artifact, the proof in hex with its "
            "public values: summary.json's proof_bytes, about twice that)")


def _settle(out: Path, demo_chain: DemoChain, console: Console) -> dict:
    """The demo's end: slash every bad proof the aggregator kept, then each wallet's stake, rewards and slashes
    as the chain has them (printed, and returned for summary.json)."""
    from aggregator.ledger.incentives import incentives_table, slash_all, tokens, wallet_incentives
    from contracts import Registry, connect

    registry = Registry.at(connect(demo_chain.chain.rpc_url), demo_chain.registry, demo_chain.aggregator_key)
    for result in slash_all(registry, out / "evidence"):
        if result.get("already_slashed"):
            continue
        console.print(f"[red]slashed[/] {result['node']} for its bad proof of round {result['round']}: "
                      f"{tokens(result['amount'])} ETH of its stake ({tokens(result['bounty'])} ETH bounty to the "
                      f"aggregator), tx {result['tx_hash']}", soft_wrap=True)
    incentives = wallet_incentives(registry, demo_chain.addresses)
    console.print(incentives_table(incentives, f"incentives in registry {registry.address} (read from the chain)"))
    return incentives


def _run_deployment(demo: DemoConfig, fed: FederationConfig, setups: list[NodeSetup], console: Console,
                    attacks: list[str | None]) -> None:
    """The federation on Flower's deployment engine, on loopback: SuperLink, ``zk0node start`` per node, the run."""
    from aggregator.tools.deploy import (
        LoopbackFederation,
        LoopbackNode,
        follow_run,
        operator_part,
        run_config,
        submit_operator_run,
    )
    from contracts import create_keystore
    from node.trust import SOURCE_ROOT, build_app_bundle, bundle_hash

    if any(attacks):
        raise UserError("adversarial nodes run with --engine simulation only (an attack is a test-only node setting)")
    out = Path(demo.out)
    fab = build_app_bundle(demo.app_dir or SOURCE_ROOT)
    digest = bundle_hash(fab)
    work = out / "deployment"
    env = {**os.environ, "FLWR_HOME": str(work / "flwr-home")}  # installed app bundles stay in the demo's folder
    secrets = {"ZK0_AGGREGATOR_KEY": fed.aggregator_key} if fed.verify else {}
    # the operator's side (endpoints, paths, verdict rules), by file: never in the run config (aggregator.operator);
    # the run file submit_operator_run writes is also what makes the run the operator's
    operator = operator_part(fed)
    federation = LoopbackFederation(work, [digest], secrets, operator=operator, env=env)
    console.print(f"deployment engine on loopback: app bundle {digest} (every process runs only this one); "
                  f"logs in {work}")
    try:
        federation.start_superlink()
        for i, setup in enumerate(setups):
            wallet = setup.wallet or str(out / "wallets" / f"node{i}.json")
            if not Path(wallet).exists():  # an unverified run signs nothing, but zk0node start wants a wallet
                create_keystore(wallet, DEMO_PASSWORD)
            federation.start_node(LoopbackNode(setup.dataset, wallet, [digest], DEMO_PASSWORD, setup.cache_dir,
                                               warm_clientapp=demo.warm_clientapp), i)
        federation.wait_nodes(len(setups))
        console.print(f"SuperLink {federation.address} with {len(setups)} SuperNodes connected")
        run_id = submit_operator_run(federation.address, fab, run_config(fed, fab), federation.operator_file,
                                     operator, insecure=True)
        result = follow_run(federation.address, run_id, insecure=True,
                            on_log=lambda text: (console.file.write(text), console.file.flush()),
                            timeout=fed.timeout * (fed.rounds + 1) + 600,
                            on_interrupt=lambda: _announce_stop(out, console))
        if result.status != "completed":
            raise UserError(f"run {run_id} {result.status}: {result.details or 'see the log above'}; logs in {work}")
    finally:
        federation.stop()


def zk0agg_command() -> str:
    """How to type ``zk0agg`` here: the name where it is on PATH, else its path in this environment (``make demo``
    runs from the checkout without activating .venv), relative to this folder when under it."""
    if shutil.which("zk0agg"):
        return "zk0agg"
    script = Path(sys.executable).parent / "zk0agg"
    if not script.exists():
        return f"{sys.executable} -m aggregator.cli"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def _announce_stop(out: Path, console: Console) -> None:
    """Ctrl-C: ask the run to stop (``aggregator.run_folder``), and say what happens next."""
    request_stop(out)
    console.print("\n[yellow]Ctrl-C: the run stops at its next step; the rounds it finished go to the chain first "
                  "(Ctrl-C again quits at once: what is not sent yet stays in the journal, zk0agg sync sends it)[/]")


class _RunSimulationDeprecation(logging.Filter):
    """Drops Flower's "``run_simulation`` is deprecated" warning: the demo keeps that call on purpose
    (``_run_simulation_engine`` says why); every other Flower warning still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "The `run_simulation` function is deprecated" not in record.getMessage()


def _run_simulation_engine(server_app, client_app, nodes: int) -> None:
    """The federation on Flower's simulation engine, in this process.

    flwr 1.41 deprecates ``flwr.simulation.run_simulation`` in favour of ``flwr run`` against a SuperLink started
    with ``--simulation`` (what ``flwr run`` starts on its own for a local federation). That path loads the ServerApp
    and ClientApp from the app bundle in another process (``flwr-simulation``), so the demo could no longer hand
    them what it builds here: each node's setup and wallet, the test-only ``attacks`` train functions (which must
    never be in the bundle's ClientApp: node/ has no attack code), the live console and the tests' chain hooks. The
    bundle path is what ``--engine deployment`` runs (a real SuperLink, real SuperNodes, the pinned bundle), so the
    demo keeps ``run_simulation`` for the in-process engine, with its deprecation notice filtered
    (``_RunSimulationDeprecation``). If a Flower release removes it, this import fails loudly.
    """
    from flwr.simulation import run_simulation

    with run_simulation_kept():
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=nodes,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": max(1, min(os.cpu_count() or 1, nodes)),
                                                     "log_to_driver": logging.getLogger().level <= logging.INFO}})


# Ray's notice, at its start, that a later Ray will stop hiding GPUs from actors asked for 0 GPUs: nothing a demo
# user can act on (the demo's nodes train on the CPU, and Ray still hides the GPUs as it always did).
RAY_GPU_NOTICE = r"Tip: In future versions of Ray, Ray will no longer override accelerator visible devices"


@contextlib.contextmanager
def run_simulation_kept():
    """Within: Flower's logger drops its ``run_simulation`` deprecation notice (``_RunSimulationDeprecation``), and
    Python's warnings Ray's GPU notice (``RAY_GPU_NOTICE``); every other warning still shows."""
    flwr_logger, quiet = logging.getLogger("flwr"), _RunSimulationDeprecation()
    flwr_logger.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=RAY_GPU_NOTICE, category=FutureWarning)
            yield
    finally:
        flwr_logger.removeFilter(quiet)


BENCHMARKS = {
    ("learn", "reach"): "on 100 held-out seeds (the goal held 15 steps, anywhere in the workspace, in at most 150) an "
                        "untrained `learn` policy scores 0 % (95 % interval 0-4 %), the scripted expert 100 %, "
                        "centralized behaviour cloning 19 % (13-28 %) after 9,600 steps and 66 % (56-75 %) after "
                        "50,000, the verified federation of 4 non-IID nodes 0 % after 9,600 steps (7 %, 3-14 %, with "
                        "drift correction over 48 rounds: docs/fed-vs-central.md, \"Where it stands\")",
}
"""What the benchmark measured for a model and task (docs/fed-vs-central.md, "The benchmark"), for the demo's closing
line."""


def success_note(fed: FederationConfig, success: float, episodes: int, steps: int, floor: float | None = None) -> str:
    """The demo's closed-loop success with its 95 % interval, next to its untrained floor (round 0, the same seeds) and
    the benchmark's: a demo trains for minutes on a few episodes, the benchmark for hours on 100."""
    from sim.evaluate import wilson_interval

    low, high = wilson_interval(round(success * episodes), episodes)
    bench = BENCHMARKS.get((fed.model, fed.sim_task))
    where = f"the benchmark (docs/fed-vs-central.md): {bench}" if bench else "no benchmark for this model and task"
    untrained = f", untrained {floor:.0%} on the same seeds" if floor is not None else ""
    return (f"closed-loop success {success:.0%} (95 % interval {low:.0%}-{high:.0%} over {episodes} held-out "
            f"episode{'s' if episodes != 1 else ''}{untrained}) after {steps:,} optimizer steps; {where}.")


def run_demo(demo: DemoConfig, fed: FederationConfig | None = None, console: Console | None = None,
             on_chain: Callable | None = None) -> dict:
    """Build fixtures, run ``demo.rounds`` rounds of ``demo.nodes`` nodes in simulation; return the summary."""
    console = console or Console()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if demo.engine == "deployment":  # other processes, other working directories: absolute paths only
        demo.out, demo.cache_dir = str(Path(demo.out).resolve()), str(Path(demo.cache_dir).resolve())
    t0 = time.perf_counter()
    out = Path(demo.out)
    check_run_paths(out, resume=False)
    out.mkdir(parents=True, exist_ok=True)
    attacks = demo.attacks()
    fed = fed or FederationConfig()
    mode = f"LoRA rank {fed.lora_rank} (adapters only)" if fed.lora_rank else "full updates"
    console.print(f"[bold]zk0 demo[/]: {demo.nodes} nodes, {demo.rounds} rounds, {mode}, "
                  f"{'verified (proofs, signatures, chain)' if demo.verify else 'unverified'}, outputs in {out}")
    if demo.data == "sim":  # the task the nodes record is the one the server evaluates in closed loop
        console.print(f"datasets: scripted-expert demonstrations of {fed.sim_task} in the MuJoCo SO-100 world "
                      f"({demo.episodes} episodes per node; recorded once, then cached)")
        fixtures = sim_fixtures(Path(demo.cache_dir), demo.nodes, demo.episodes, tasks=(fed.sim_task,))
    else:
        fixtures = synthetic_fixtures(Path(demo.cache_dir), demo.nodes, demo.episodes, demo.frames)
    console.print(f"fixtures ready ({time.perf_counter() - t0:.1f}s): {len(fixtures.nodes)} node datasets + held-out")
    if demo.data == "sim" and demo.eval_episodes:
        fed.sim_eval_episodes = demo.eval_episodes
        console.print(f"closed-loop evaluation: {demo.eval_episodes} held-out episode(s) in the simulator per round")
    fed.rounds, fed.out_dir, fed.cache_dir, fed.heldout = demo.rounds, str(out), demo.cache_dir, fixtures.heldout
    fed.validation = fixtures.validation if demo.validation else ""
    fed.min_nodes = demo.nodes
    chain, demo_chain, wallets = None, None, [None] * demo.nodes
    if demo.verify:
        os.environ["ZK0_WALLET_PASSWORD"] = DEMO_PASSWORD  # the simulated nodes read it (never argv)
        unapproved = {i for i, a in enumerate(attacks) if a == "unapproved"}
        demo_chain = _start_chain(out, demo.nodes, console, unapproved, demo.stake)
        chain, fed.registry, fed.aggregator_key, wallets = (demo_chain.chain, demo_chain.registry,
                                                            demo_chain.aggregator_key, demo_chain.wallets)
        fed.chain_rpc, fed.verify = chain.rpc_url, True
        _register_circuit(demo, fed, demo_chain, fixtures.heldout, console)
        if on_chain is not None:  # tests: e.g. take the chain away mid-run
            on_chain(chain)
        console.print("[yellow]proofs use a DEVELOPMENT SRS made on this machine: fine for a demo, forgeable in "
                      "general (docs/trust-model.md)[/]")
    kinds = [a if a != "unapproved" else None for a in attacks]  # an unapproved wallet runs the honest round
    train_fn = None
    if any(kinds):
        from attacks import ATTACKS, attack_train_fn

        for i, attack in enumerate(attacks):
            if attack:
                console.print(f"node {i} is adversarial: {attack} ({ATTACKS.get(attack, 'not an approved wallet')})")
        train_fn = attack_train_fn(kinds)
    uris = list(fixtures.nodes)
    if any(kinds):
        from attacks import COPIERS

        uris = [fixtures.nodes[0] if kind in COPIERS else uri for kind, uri in zip(kinds, uris, strict=True)]
    setups = [NodeSetup(dataset=uri, model=fed.model, cache_dir=demo.cache_dir, wallet=w)
              for uri, w in zip(uris, wallets, strict=True)]
    client_app = make_client_app(lambda ctx: setups[int(ctx.node_config["partition-id"])], train_fn)
    try:
        if demo.engine == "deployment":
            _run_deployment(demo, fed, setups, console, kinds)
        else:
            try:
                _run_simulation_engine(make_server_app(fed, console=console), client_app, demo.nodes)
            except KeyboardInterrupt:  # Flower stopped the nodes; the ServerApp thread ends the run at its next pull
                _announce_stop(out, console)
                if not wait_for_writer(out, fed.chain_drain_timeout + fed.timeout):
                    console.print("[red]the ServerApp did not stop in time[/]")
        summary_path = out / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        if demo_chain is not None and summary.get("rounds"):
            summary["incentives"] = _settle(out, demo_chain, console)
            summary_path.write_text(json.dumps(summary, indent=2, default=str))
    finally:
        if chain is not None:
            chain.stop()
    interrupted = summary.get("interrupted_after") is not None
    if not summary.get("rounds"):
        if interrupted:
            raise KeyboardInterrupt  # stopped before a round ended: nothing to report
        raise UserError(f"the federation produced no round (see the log above); outputs in {out}")
    ended = f"stopped by Ctrl-C after round {summary['interrupted_after']}" if interrupted else "finished"
    console.print(f"demo {ended} in {time.perf_counter() - t0:.0f}s: eval loss {summary['initial_eval_loss']:.4f} "
                  f"→ {summary['final_eval_loss']:.4f}; {summary_path}")
    zk0agg = zk0agg_command()
    pending = (summary.get("chain") or {}).get("pending_operations")
    if pending:
        console.print(f"[red]{pending} chain operation(s) not sent[/]: bring the chain back ({zk0agg} chain up --state "
                      f"{out / 'anvil-state.json'}), then {zk0agg} sync --out {out} --chain-rpc http://127.0.0.1:8545 "
                      f"(the aggregator key: ZK0_AGGREGATOR_KEY, anvil's second dev key)", soft_wrap=True)
    if "success_rate" in summary["rounds"][-1]:
        steps = demo.nodes * demo.rounds * fed.local_steps
        last = summary["rounds"][-1]
        console.print(success_note(fed, last["success_rate"], last["sim_eval_episodes"], steps,
                                   summary.get("initial_success_rate")))
    if demo.verify:  # the demo's anvil stopped with it; its state file brings the same chain (and registry) back
        console.print(f"explore it in a browser: [bold]{zk0agg} chain up --state {out / 'anvil-state.json'}[/] (keeps "
                      f"the chain up), then [bold]{zk0agg} explorer --rpc http://127.0.0.1:8545 --registry "
                      f"{fed.registry} --outputs {out}[/] and open http://127.0.0.1:8480/", soft_wrap=True)
    return summary
