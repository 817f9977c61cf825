"""The verified round protocol end to end: real anvil, real EZKL proofs, real Flower simulation, tiny SmolVLA.

The run is the session's ``verified_run`` (tests/integration/conftest.py): nine nodes, two rounds, four honest nodes
with different data and five attackers (a forger, a replayer, a sign-flipper with a valid proof, a fabricator of
witnesses, and a node signing with a key that is not its wallet). Every update that passes the proof checks is
scored on the aggregator's validation set; the scores travel to the chain record. The chain is stopped after
round 1 and started again while round 2 runs: every record must still reach it exactly once.
"""

from __future__ import annotations

import json
import math

import pytest

from contracts import Reason, Registry, Status, connect

# The session's verified run is set up by whichever test needing it runs first: nine nodes with real proofs take
# 10-15 min on a loaded 2-core machine, beyond the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(2400)

HONEST, NODES = 4, 9  # verified_run's nodes: the honest first, then one of each attack


@pytest.fixture(scope="module")
def ten(verified_run):
    out, summary, chain, roles = verified_run
    assert (roles.count(None), len(roles)) == (HONEST, NODES) and not any(roles[:HONEST])
    return out, summary, chain


def by_claimed(round_entry: dict) -> dict:
    return {n["claimed_address"]: n for n in round_entry["nodes"]}


def wallet_addresses(out) -> list[str]:
    from contracts import read_address

    return [read_address(out / "wallets" / f"node{i}.json") for i in range(NODES)]


def test_gate_and_krum_outcomes(ten):
    out, summary, _ = ten
    wallets = wallet_addresses(out)
    forger, replayer, flipper, fabricator, impostor = wallets[HONEST:]
    r1, r2 = (by_claimed(r) for r in summary["rounds"])
    for r in (r1, r2):
        assert r[forger]["status"] in ("BAD_PROOF", "UNBOUND"), r[forger]
        assert r[flipper]["status"] in ("HARMFUL", "NOT_SELECTED"), r[flipper]
        # The fabricators' proofs verify (loss_after 0 on made-up targets); the validation score stops them.
        assert r[fabricator]["loss_after"] < 0.01 * r[fabricator]["loss_before"]
        assert r[fabricator]["status"] == "HARMFUL" or (r[fabricator]["status"] == "NOT_SELECTED"
                                                         and r[fabricator]["score"] <= 0), r[fabricator]
        assert r[impostor]["status"] == "BAD_SIGNATURE", r[impostor]
        for honest in wallets[:HONEST]:
            assert r[honest]["status"] in ("SELECTED", "NOT_SELECTED"), r[honest]
            assert r[honest]["loss_after"] < r[honest]["loss_before"]
            assert r[honest]["score"] > -0.2  # never HARMFUL (tiny's τ); non-IID nodes may score a little below 0
    assert r1[replayer]["status"] in ("SELECTED", "NOT_SELECTED")  # honest in round 1
    assert r2[replayer]["status"] == "STALE", r2[replayer]
    for entry in summary["rounds"]:  # selection by usefulness: every useful verified reply counts, by its score
        useful = {n["address"] for n in entry["nodes"] if n["status"] in ("SELECTED", "NOT_SELECTED")
                  and n["score"] > 0.01 * entry["validation_loss"]}
        selected = {n["address"] for n in entry["nodes"] if n["status"] == "SELECTED"}
        assert entry["selection"] in ("useful", "best", "together"), entry["selection"]
        assert selected == useful or entry["selection"] != "useful", entry["nodes"]
        assert sum(n["weight"] for n in entry["nodes"]) == pytest.approx(1.0)


def test_chain_records_equal_summary(ten):
    out, summary, chain = ten
    registry = Registry.at(connect(chain.rpc_url), summary["chain"]["registry"])
    assert summary["chain"]["pending_operations"] == 0
    for entry in summary["rounds"]:
        info = registry.round_info(summary["chain"]["run_id"], entry["round"])
        assert (info.state, info.global_hash, info.new_global_hash) == ("closed", entry["global_hash"],
                                                                         entry["new_global_hash"])
        records = {r.node: r for r in registry.round_records(summary["chain"]["run_id"], entry["round"])}
        assert len(records) == len(entry["nodes"]) == NODES
        for node in entry["nodes"]:
            rec = records[node["address"]]
            status, reason = node["status"], node["reason"] or "NONE"
            if status in ("SELECTED", "NOT_SELECTED"):
                assert (rec.status, rec.reason) == (Status[status], Reason[reason])
            else:
                assert (rec.status, rec.reason) == (Status.REJECTED, Reason[status])
            assert node["tx_hash"] and node["tx_hash"].startswith("0x")
            if rec.signed:
                assert node["address"] == node["claimed_address"]
                assert (rec.update_hash, rec.proof_hash, rec.data_commitment) == (
                    node["update_hash"], node["proof_hash"], node["data_commitment"])
                assert rec.loss_before == pytest.approx(node["loss_before"], abs=1e-9)
                assert rec.loss_after == pytest.approx(node["loss_after"], abs=1e-9)
                # the score the aggregator attested (0 on chain for a reply rejected before it was scored), and
                # the weight the reply had in the round's average (what its reward follows)
                assert rec.score == pytest.approx(node["score"] or 0.0, abs=1e-9)
                assert rec.weight == pytest.approx(node["weight"], abs=1e-9)
            else:
                assert status in ("MALFORMED", "UNKNOWN_NODE", "BAD_SIGNATURE", "STALE")
    saved = json.loads((out / "summary.json").read_text())
    assert saved["rounds"] == summary["rounds"]


def test_every_record_on_chain_exactly_once_despite_outage(ten):
    _, summary, chain = ten
    registry = Registry.at(connect(chain.rpc_url), summary["chain"]["registry"])
    events = registry.events("ContributionRecorded")
    keys = [(e["args"]["round"], e["args"]["node"]) for e in events]
    assert len(keys) == len(set(keys)) == 2 * NODES
    assert [e["args"]["round"] for e in registry.events("RoundOpened")] == [1, 2]
    assert [e["args"]["round"] for e in registry.events("RoundClosed")] == [1, 2]


def test_forger_slashed_and_selected_wallets_rewarded(ten):
    """The demo registered the circuit, kept each BAD_PROOF reply as evidence and slashed it on chain at its end;
    every wallet SELECTED (with a weight in the average) has a reward; summary.json's incentives are the chain's."""
    out, summary, chain = ten
    registry = Registry.at(connect(chain.rpc_url), summary["chain"]["registry"])
    wallets = wallet_addresses(out)
    forger = wallets[HONEST]
    assert summary["chain"]["circuit_registered"] and registry.circuit(summary["chain"]["circuit_id"]).registered
    bad = [r["round"] for r in summary["rounds"] if by_claimed(r)[forger]["status"] == "BAD_PROOF"]
    assert bad, "the forger's proof never failed as BAD_PROOF"
    assert sorted(int(p.parent.name.split("_")[1]) for p in (out / "evidence").glob(f"round_*/{forger}.json")) == bad
    slashes = [e["args"] for e in registry.events("Slashed")]
    assert sorted(e["round"] for e in slashes if e["node"] == forger) == bad
    assert {e["node"] for e in slashes} == {forger}  # nobody honest is slashed
    stake = registry.params().min_stake
    incentives = summary["incentives"]
    assert incentives[forger]["slashes"] == len(bad) and incentives[forger]["slashed_wei"] > 0
    assert registry.stake_of(forger).amount == incentives[forger]["stake_wei"] == stake - sum(
        e["amount"] for e in slashes)
    assert incentives[forger]["rewards_pending"] == 0 and registry.pending_rewards(forger)[0] == 0
    rewarded = {n["address"] for r in summary["rounds"] for n in r["nodes"]
                if n["status"] == "SELECTED" and n["weight"] > 0}
    assert rewarded and rewarded <= set(wallets[:HONEST]) | {wallets[HONEST + 1]}  # the honest (and round-1 replayer)
    for wallet in wallets:
        pending = registry.pending_rewards(wallet)[0]
        assert incentives[wallet]["rewards_pending"] == pending
        assert (pending > 0) == (wallet in rewarded), wallet
    emitted = sum(registry.round_info(summary["chain"]["run_id"], r["round"]).emission for r in summary["rounds"])
    assert emitted - 2 * NODES < sum(w["rewards_pending"] for w in incentives.values()) <= emitted
    saved = json.loads((out / "summary.json").read_text())
    assert saved["incentives"] == incentives


def test_the_run_learns_and_writes_its_metrics_plot_contributions_and_checkpoints(ten, cache_dir):
    """What the operator reads after a run: the held-out loss fell, metrics.json has each round's node losses,
    losses.png is drawn, contributions.csv has a row per reply, and each round's checkpoint reloads with LeRobot to
    the held-out loss the round reported."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from aggregator.tools.fixtures import synthetic_fixtures
    from node.datasets import load_dataset, load_metadata
    from node.model import make_smolvla
    from node.train import evaluate_loss

    out, summary, _ = ten
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert all(math.isfinite(r["server_eval_loss"]) for r in summary["rounds"])
    assert summary["final_eval_loss"] < summary["initial_eval_loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rounds"]) == 2 and all(r["client_train_loss"] for r in metrics["rounds"])
    assert (out / "losses.png").stat().st_size > 1000
    assert len((out / "contributions.csv").read_text().strip().splitlines()) == 1 + 2 * NODES
    heldout = synthetic_fixtures(cache_dir, NODES, 1, 24).heldout  # the run's own fixtures (built, so only read)
    meta = load_metadata(heldout)
    for entry in summary["rounds"]:
        ckpt = out / "checkpoints" / f"round_{entry['round']}"
        assert isinstance(SmolVLAPolicy.from_pretrained(ckpt), SmolVLAPolicy)
        bundle = make_smolvla(f"local:{ckpt}", meta, cache_dir)
        data = load_dataset(heldout, delta_timestamps=resolve_delta_timestamps(bundle.config, meta))
        loss, _ = evaluate_loss(bundle, data, max_batches=summary["config"]["eval_batches"])
        assert loss == pytest.approx(entry["server_eval_loss"], rel=1e-5)
