"""An outage of the chain is never a verdict (issue 19): approved wallets stay approved while the chain is away,
a wallet nobody could look up is held out, not rejected, and the registry judges it when the chain is back.
Real anvil, stopped and started with its state; the real gate check, journal and ChainSync."""

from __future__ import annotations

import pytest
from eth_account import Account

from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.journal import Journal
from aggregator.protocol.gate import Reply, RoundContext, check_known_node
from aggregator.protocol.verification import Verification
from contracts import Contribution, LocalChain, Reason, Registry, Status, connect, new_run_id, sign_contribution

H = "0x" + "11" * 32


@pytest.fixture()
def chain(tmp_path):
    with LocalChain(state_path=tmp_path / "anvil-state.json") as chain:
        yield chain


def approvals(registry: Registry) -> Verification:
    """The approval part of a verified run (no circuit needed for it)."""
    return Verification(circuit=None, checker=None, registry=registry, sync=None, run_id="0x" + "00" * 32)


def known(run: Verification, address: str) -> Reply:
    reply = Reply(node_id=1, message=None, claimed_address=address)
    check_known_node(reply, RoundContext(1, {}, H, is_approved=run.is_approved))
    return reply


def test_outage_holds_unknown_wallets_out_and_the_chain_judges_them_when_back(chain, tmp_path):
    owner, agg_key, a_key, b_key, c_key = chain.private_keys[:5]
    a, b, c = (Account.from_key(k).address for k in (a_key, b_key, c_key))
    registry = Registry.deploy(connect(chain.rpc_url), owner, Account.from_key(agg_key).address)
    registry.approve_node(a)
    agg = Registry.at(connect(chain.rpc_url), registry.address, agg_key)
    run = approvals(agg)
    run.load_approvals()  # the run starts: a is approved
    registry.approve_node(c)  # approved after the run read its list: never looked up by this run

    chain.stop()
    assert known(run, a).approval_unchecked is False  # approved, from the run's start: no outage verdict
    held_b, held_c = known(run, b), known(run, c)  # nobody can tell now: held out, not UNKNOWN_NODE
    assert held_b.approval_unchecked and held_c.approval_unchecked

    # The held-out replies wait in the journal as NOT_SELECTED records the registry must judge.
    judged, run = {}, new_run_id("outage", agg.address)
    sync = ChainSync(agg, Journal(tmp_path / "journal.sqlite"), run, retry_interval=0.2,
                     on_done=lambda op, tx: judged.__setitem__(op.payload.get("node_id"), op))
    sync.open_round(1, H, H)
    for node_id, (key, address) in enumerate([(b_key, b), (c_key, c)], start=2):
        contribution = Contribution(run, 1, H, "0x" + f"{node_id}" * 64, "0x" + f"{node_id + 4}" * 64, "0x" + "44" * 32,
                                    0.5, 0.4, H)
        sync.record(1, address, contribution, sign_contribution(key, contribution, chain.chain_id, agg.address),
                    Status.NOT_SELECTED, Reason.NONE, node_id=node_id, approval_unchecked=True)
    sync.release(1)  # the round is committed in summary.json
    assert sync.flush() == 3

    chain.start()
    assert sync.drain(timeout=30) == 0
    # c was approved: its record is what the aggregator did (held out, not selected); b is not: UNKNOWN_NODE.
    assert agg.get_record(run, 1, c).status == Status.NOT_SELECTED
    assert agg.get_record(run, 1, b) is None
    rejection = next(e["args"] for e in agg.events("ContributionRecorded") if e["args"]["node"] != c)
    assert rejection["reason"] == Reason.UNKNOWN_NODE
    assert judged[2].payload["verdict"][:2] == ["REJECTED", "UNKNOWN_NODE"] and "verdict" not in judged[3].payload
