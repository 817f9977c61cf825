"""The journal reaches the chain exactly once, through an outage of the chain (real anvil)."""

from __future__ import annotations

import pytest
from eth_account import Account

from aggregator.chain_sync import ChainSync
from aggregator.journal import Journal
from aggregator.verification import reply_address
from contracts import Contribution, LocalChain, Reason, Registry, Status, connect, sign_contribution

H = "0x" + "11" * 32


def contribution(round_: int) -> Contribution:
    return Contribution(round_, H, "0x" + "22" * 32, "0x" + "33" * 32, "0x" + "44" * 32, 0.5, 0.4)


@pytest.fixture()
def chain(tmp_path):
    with LocalChain(state_path=tmp_path / "anvil-state.json") as chain:
        yield chain


def deploy(chain):
    owner, agg, node = chain.private_keys[:3]
    registry = Registry.deploy(connect(chain.rpc_url), owner, Account.from_key(agg).address)
    registry.approve_node(Account.from_key(node).address)
    return registry.address, agg, node


def test_outage_then_restart_records_each_once(chain, tmp_path):
    address, agg_key, node_key = deploy(chain)
    node = Account.from_key(node_key).address
    journal = Journal(tmp_path / "journal.sqlite")
    done = []
    sync = ChainSync(Registry.at(connect(chain.rpc_url), address, agg_key), journal, on_done=lambda op, tx:
                     done.append((op.kind, op.round, tx)), retry_interval=0.2)

    # Round 1 goes through while the chain is up.
    sync.open_round(1, H, H)
    c1 = contribution(1)
    sync.record(1, node, c1, sign_contribution(node_key, c1, chain.chain_id, address), Status.SELECTED,
                Reason.NONE, node_id=7)
    sync.reject(1, reply_address(8), Reason.MALFORMED, H, node_id=8)
    sync.close_round(1, H)
    assert sync.flush() == 0

    # The chain goes away: round 2 waits in the journal, nothing is lost.
    chain.stop()
    sync.open_round(2, H, H)
    c2 = contribution(2)
    sync.record(2, node, c2, sign_contribution(node_key, c2, chain.chain_id, address), Status.NOT_SELECTED,
                Reason.NONE, node_id=7)
    sync.close_round(2, H)
    assert sync.flush() == 3 and sync.last_error

    # It comes back with the same state; a restarted aggregator (new journal handle, new sync) drains it.
    chain.start()
    journal.close()
    journal = Journal(tmp_path / "journal.sqlite")
    assert not journal.add("open", 2, "", {"global_hash": H, "circuit_id": H})  # restart re-journals: ignored
    sync = ChainSync(Registry.at(connect(chain.rpc_url), address, agg_key), journal,
                     on_done=lambda op, tx: done.append((op.kind, op.round, tx)), retry_interval=0.2)
    assert sync.drain(timeout=30) == 0

    registry = Registry.at(connect(chain.rpc_url), address)
    events = registry.events("ContributionRecorded")
    assert [(e["args"]["round"], e["args"]["node"]) for e in events] == [
        (1, node), (1, reply_address(8)), (2, node)]
    assert len(events) == 3
    assert registry.get_record(2, node).status == Status.NOT_SELECTED
    assert all(op.state == "done" and op.tx_hash for op in journal.all())
    assert len(done) == 7 and len({tx for _, _, tx in done}) == 7


def test_send_whose_receipt_was_lost_is_not_doubled(chain, tmp_path):
    address, agg_key, node_key = deploy(chain)
    node = Account.from_key(node_key).address
    registry = Registry.at(connect(chain.rpc_url), address, agg_key)
    sync = ChainSync(registry, Journal(tmp_path / "journal.sqlite"))
    sync.open_round(1, H, H)
    c1 = contribution(1)
    sig = sign_contribution(node_key, c1, chain.chain_id, address)
    sync.record(1, node, c1, sig, Status.SELECTED, Reason.NONE, node_id=1)
    # Prepare: the aggregator sent these, then crashed before marking them done.
    registry.open_round(1, H, H)
    sent = registry.record_contribution(c1, sig, Status.SELECTED)
    assert sync.flush() == 0
    ops = sync.journal.all()
    assert all(op.state == "done" for op in ops)
    assert ops[1].tx_hash == "0x" + bytes(sent["transactionHash"]).hex()  # found on chain, not re-sent
    assert len(registry.events("ContributionRecorded")) == 1
