"""Faults in a verified run: a node dies mid-round, and the aggregator is killed mid-run and restarted.

One run of three nodes on real anvil, EZKL and Flower's simulation engine: two honest nodes and one that dies after
training from round 2 on (the "crash" attack: its ClientApp raises, so Flower hands the aggregator an error reply).
The aggregator is killed in round 2, just after it opened the round on chain, and started again with
``FederationConfig.resume``: it must continue from summary.json, the round-1 checkpoint and the chain journal.

The aggregator's "kill" here is a patched ``configure_train`` that raises (and the sender thread is stopped by
hand): a SIGKILL cannot be aimed at one point of an in-process simulation, so this test simulates it. The real
SIGKILL of a deployed ServerApp, at each phase, then ``--resume``, is in ``scripts/eval_faults.py``
(docs/reliability.md) and, at the journal level, in
tests/integration/test_chain_sync.py::test_resume_after_a_kill_at_any_phase_agrees_with_the_summary.

The third fault, the chain going away mid-run, is tested where the chain code is:
tests/integration/test_verified_federation.py::test_every_record_on_chain_exactly_once_despite_outage and
tests/integration/test_chain_sync.py.
"""

from __future__ import annotations

import json

import pytest

from aggregator.config import FederationConfig
from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.journal import Journal
from aggregator.protocol.strategy import GatedMultiKrum
from aggregator.server_app import make_server_app
from aggregator.tools.demo import DemoConfig, run_demo
from aggregator.tools.fixtures import synthetic_fixtures
from attacks import attack_train_fn
from contracts import Registry, connect, read_address
from node.client_app import NodeSetup, make_client_app

NODES, CRASHER = 3, 2  # the last node crashes from round 2 on


class AggregatorKilled(RuntimeError):
    pass


def fed(**kw) -> FederationConfig:
    return FederationConfig(local_steps=5, batch_size=8, eval_batches=2, fraction_evaluate=0.0, slice_rows=16,
                            krum_f=0, krum_m=2, **kw)


@pytest.fixture(scope="module")
def restarted(cache_dir, tmp_path_factory):
    """Run 1 is killed in round 2 after ``openRound(2)``; run 2 resumes the same output folder on the same chain."""
    out = tmp_path_factory.mktemp("faults") / "run"
    chains, syncs = [], []
    configure = GatedMultiKrum.configure_train
    start_sync = ChainSync.start

    def killed_in_round_2(self, server_round, *args):
        messages = configure(self, server_round, *args)
        if server_round + self.round_offset == 2:
            raise AggregatorKilled("aggregator killed mid-round 2")
        return messages

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GatedMultiKrum, "configure_train", killed_in_round_2)
        mp.setattr(ChainSync, "start", lambda self: (syncs.append(self), start_sync(self))[1])
        with pytest.raises(AggregatorKilled):
            run_demo(DemoConfig(nodes=NODES, rounds=2, out=str(out), cache_dir=str(cache_dir), episodes=1, frames=24,
                                data="synthetic", adversaries=("crash",)), fed(), on_chain=chains.append)
    for sync in syncs:
        sync.stop()  # a killed process's sender thread is gone too
    first = json.loads((out / "summary.json").read_text())
    chain = chains[0].start()  # the demo stopped it; same state, same port

    from flwr.simulation import run_simulation

    fixtures = synthetic_fixtures(cache_dir, NODES, episodes=1, frames=24)
    setups = [NodeSetup(dataset=uri, cache_dir=str(cache_dir), wallet=str(out / "wallets" / f"node{i}.json"))
              for i, uri in enumerate(fixtures.nodes)]
    kinds = ["crash" if i == CRASHER else None for i in range(NODES)]
    cfg = fed(rounds=2, out_dir=str(out), cache_dir=str(cache_dir), heldout=fixtures.heldout, min_nodes=NODES,
              verify=True, chain_rpc=chain.rpc_url, registry=first["chain"]["registry"],
              aggregator_key=chain.private_keys[1], resume=True)
    run_simulation(server_app=make_server_app(cfg),
                   client_app=make_client_app(lambda ctx: setups[int(ctx.node_config["partition-id"])],
                                                         attack_train_fn(kinds)),
                   num_supernodes=NODES, backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                                         "init_args": {"num_cpus": 2, "log_to_driver": False}})
    summary = json.loads((out / "summary.json").read_text())
    yield out, first, summary, chain
    chain.stop()


def by_wallet(out, entry: dict) -> dict:
    nodes = {n["claimed_address"]: n for n in entry["nodes"]}
    crashed = [n for n in entry["nodes"] if n["claimed_address"] is None]
    return {i: nodes.get(read_address(out / "wallets" / f"node{i}.json")) or (crashed[0] if crashed else None)
            for i in range(NODES)}


def test_crashed_node_is_rejected_and_the_round_goes_on(restarted):
    out, _, summary, _ = restarted
    r1, r2 = (by_wallet(out, r) for r in summary["rounds"])
    assert r1[CRASHER]["status"] in ("SELECTED", "NOT_SELECTED")  # alive in round 1
    assert r2[CRASHER]["status"] == "MALFORMED" and "node died mid-round 2" in r2[CRASHER]["detail"]
    assert r2[CRASHER]["tx_hash"]  # the rejection is on chain too
    honest = [r2[i]["status"] for i in range(NODES) if i != CRASHER]
    assert set(honest) <= {"SELECTED", "NOT_SELECTED"} and "SELECTED" in honest, honest
    assert not summary["rounds"][1]["kept_global"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rounds"][1]["seconds"]["round"] < fed().timeout / 2  # no waiting for the dead node


def test_restarted_aggregator_resumes_from_checkpoint_and_journal(restarted):
    out, first, summary, chain = restarted
    assert [r["round"] for r in first["rounds"]] == [1]  # killed in round 2
    assert [r["round"] for r in summary["rounds"]] == [1, 2] and summary["resumed_after"] == [1]
    assert summary["rounds"][0] == first["rounds"][0]
    assert summary["initial_eval_loss"] == first["initial_eval_loss"]
    assert summary["rounds"][1]["global_hash"] == summary["rounds"][0]["new_global_hash"]  # from the checkpoint
    assert (out / "checkpoints" / "round_2" / "model.safetensors").exists()
    assert summary["chain"]["pending_operations"] == 0
    journal = Journal(out / "chain-journal.sqlite")
    assert {op.state for op in journal.all()} == {"done"}  # nothing refused by the chain, nothing left
    registry = Registry.at(connect(chain.rpc_url), summary["chain"]["registry"])
    assert [e["args"]["round"] for e in registry.events("RoundOpened")] == [1, 2]  # round 2 opened once
    assert [e["args"]["round"] for e in registry.events("RoundClosed")] == [1, 2]
    recorded = {(e["args"]["round"], e["args"]["node"]) for e in registry.events("ContributionRecorded")}
    assert len(recorded) == len(registry.events("ContributionRecorded")) == 2 * NODES
    for entry in summary["rounds"]:
        info = registry.round_info(summary["chain"]["run_id"], entry["round"])
        assert info.new_global_hash == entry["new_global_hash"]
        assert all(n["tx_hash"] for n in entry["nodes"])
