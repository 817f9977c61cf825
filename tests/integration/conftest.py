"""One verified federation shared by the tests that read a finished run: the gate and Krum outcomes, the chain's
records, incentives, the explorer, W&B logging and the release. A verified run is the suite's costliest fixture
(real EZKL proofs for every reply), so it is run once per session, not once per test module.

Ten nodes, two rounds: four honest nodes with different data, then one attacker each (forging its proof,
replaying in round 2 its reply of round 1, sign-flipping the unproven part of its update with a valid proof,
proving fabricated witnesses for a poisoned update and for the global model plus noise, and signing with a key
that is not its approved wallet). The chain (anvil) is stopped after round 1 and started again, with the same
state, while round 2 runs: every record must still reach it exactly once. W&B logs offline.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ATTACKERS = ("forge-proof", "replay", "sign-flip", "fabricate-witness", "fabricate-free-rider", "bad-signature")


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
