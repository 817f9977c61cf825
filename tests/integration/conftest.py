"""Fixtures the integration tests share, each built once for every module that uses it.

One verified federation for the tests that read a finished run: the gate and Krum outcomes, the chain's records,
incentives, the explorer, W&B logging and the release. A verified run is the suite's costliest fixture (real EZKL
proofs for every reply), so it is run once per session, not once per test module. Nine nodes, two rounds: four honest
nodes with different data, then one attacker each (forging its proof, replaying in round 2 its reply of round 1,
sign-flipping the unproven part of its update with a valid proof, proving a fabricated witness for a poisoned
update, and signing with a key that is not its approved wallet; the fabricated free rider is test_gate.py's). The
chain (anvil) is stopped after round 1 and started again, with the same state, while round 2 runs: every record must
still reach it exactly once. W&B logs offline.

The chain tests' anvil, wallets by role and deployed tiny-circuit verifier; the verifier service tests' tiny circuit
and a way to serve it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ATTACKERS = ("forge-proof", "replay", "sign-flip", "fabricate-witness", "bad-signature")


class VerifiedRun(NamedTuple):
    out: Path  # the run's output folder (summary.json, wallets/, checkpoints/, wandb/)
    summary: dict
    chain: object  # contracts.LocalChain, started again after the run
    roles: list[str | None]  # per node: None (honest) or its attack; wallets/node{i}.json is node i's wallet


def outage_after_round_one(out, chain, seconds: float = 6.0) -> None:
    """Stop anvil (state dumped) once round 1 is in summary.json; start it again ``seconds`` later."""

    def run():
        summary = out / "summary.json"
        while not (summary.exists() and json.loads(summary.read_text())["rounds"]):
            time.sleep(0.2)
        chain.stop()
        time.sleep(seconds)
        chain.start()

    threading.Thread(target=run, daemon=True).start()


@pytest.fixture(scope="session")
def verified_run(cache_dir, tmp_path_factory):
    """The finished run, its chain started again (same state) to read its records."""
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("verified") / "run"
    chains = []

    def on_chain(chain):
        chains.append(chain)
        outage_after_round_one(out, chain)

    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_API_KEY")}
    os.environ["WANDB_MODE"] = "offline"  # never upload from a test, key or not
    os.environ.pop("WANDB_API_KEY", None)
    try:
        fed = FederationConfig(local_steps=5, batch_size=8, eval_batches=2, fraction_evaluate=0.0, slice_rows=16,
                               krum_f=1, krum_m=3, wandb=True)
        demo = DemoConfig(nodes=4 + len(ATTACKERS), rounds=2, out=str(out), cache_dir=str(cache_dir), episodes=1,
                          frames=24, data="synthetic", adversaries=ATTACKERS)
        summary = run_demo(demo, fed, on_chain=on_chain)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    chain = chains[0]
    chain.start()  # the demo stops it at the end; bring it back (same state) to read the records
    yield VerifiedRun(out, summary, chain, demo.attacks())
    chain.stop()


# ---------------------------------------------------------------------------------------------- the chain
@pytest.fixture(scope="session")
def chain():
    """One anvil for the chain tests (test_chain.py, test_chain_incentives.py): each deploys registries of its own."""
    from contracts import LocalChain

    with LocalChain() as local:
        yield local


@pytest.fixture(scope="module")
def node_count() -> int:
    """How many node wallets ``keys`` names: 3 (a test module overrides this fixture for another number)."""
    return 3


@pytest.fixture(scope="module")
def keys(chain, node_count):
    """The chain's funded wallets by role: owner, aggregator, ``node_count`` nodes, one stranger (never approved) and
    three spares, in the chain's order."""
    k = chain.private_keys
    stranger = 2 + node_count
    return {"owner": k[0], "aggregator": k[1], "nodes": k[2:stranger], "stranger": k[stranger],
            "spare": k[stranger + 1:stranger + 4]}


@pytest.fixture(scope="session")
def verifier(chain, tiny_circuit):
    """The tiny circuit's reusable EZKL verifier contract, deployed once on ``chain`` by its owner wallet
    (test_prover.py has a verifier fixture of its own)."""
    from contracts import connect
    from contracts.testing import deploy_contract

    w3 = connect(chain.rpc_url)
    address, _ = deploy_contract(w3, chain.private_keys[0], tiny_circuit.verifier_abi, tiny_circuit.verifier_bytecode)
    return w3.eth.contract(address=address, abi=tiny_circuit.verifier_abi)


# ---------------------------------------------------------------------------------------------- the verifier service
@pytest.fixture(scope="session")
def service_circuit(cache_dir):
    """The verifier service tests' tiny circuit (A=2, H=8, m=4 at input scale 8: logrows 10, a proof in ~2 s, dev SRS;
    losses up to 2^16/(m·A)), built once for test_verifier_service.py and test_verifier_api_fuzz.py."""
    from prover import CircuitConfig, SliceShape, build_circuit

    return build_circuit(SliceShape(actions=2, hidden=8, rows=4), "dev", cache_dir / "verifier-service",
                         config=CircuitConfig(input_scale=8, decomp_base=256, decomp_legs=6))


@contextlib.contextmanager
def _serving(circuit, folder: Path, token: str, *flags: str):
    from aggregator.verifier.service import build_parser, make_server
    from contracts.local_chain import free_port

    exported = circuit.export_verifier(folder / "circuit")
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    port = free_port()
    args = build_parser().parse_args(["--circuit", str(exported), "--srs", str(circuit.srs.path), "--srs-kind", "dev",
                                      "--token-file", str(token_file), "--port", str(port), "--workers", "2",
                                      "--log-level", "warning", *flags])  # fmt: skip
    server = make_server(args)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the verifier service did not start"
        time.sleep(0.05)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def serve_verifier():
    """The verifier service as ``zk0agg verifier serve`` builds it, in a background thread, two workers:
    ``with serve_verifier(circuit, folder, token, *flags) as (server, url)`` exports ``circuit`` into ``folder``,
    writes the bearer token there and serves on a free loopback port until the block ends."""
    return _serving
