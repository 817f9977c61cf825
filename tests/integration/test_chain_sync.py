"""The journal reaches the chain exactly once, through an outage of the chain, never adopting what it did not send,
and after a kill at any phase of a round a resume leaves chain and summary.json agreeing record for record
(real anvil, real journal, ChainSync, Verification and RunOutputs; no Flower federation needed)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from rich.console import Console

from aggregator.ledger.chain_sync import ChainSync
from aggregator.ledger.journal import Journal
from aggregator.outputs import RunOutputs
from aggregator.protocol.gate import Outcome, Reply
from aggregator.protocol.strategy import RoundLog
from aggregator.protocol.verification import Verification, reply_address
from contracts import (
    Contribution,
    LocalChain,
    Reason,
    Registry,
    Status,
    connect,
    new_run_id,
    sign_contribution,
)

H = "0x" + "11" * 32
RUN = "0x" + "a1" * 32


def contribution(round_: int, run_id: str = RUN, global_hash: str = H, update: str = "22") -> Contribution:
    return Contribution(run_id, round_, global_hash, "0x" + update * 32, "0x" + update * 31 + "33", "0x" + "44" * 32,
                        0.5, 0.4, H)  # one piece of work per update: its own proof hash


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    with LocalChain(state_path=tmp_path_factory.mktemp("anvil") / "anvil-state.json") as chain:
        yield chain


@pytest.fixture(scope="module")
def deployed(chain):
    """A registry, the aggregator's key, and three approved nodes' keys (shared by the tests: each uses its own
    run ids, so their rounds and records never meet)."""
    owner, agg, *nodes = chain.private_keys[:5]
    registry = Registry.deploy(connect(chain.rpc_url), owner, Account.from_key(agg).address)
    for key in nodes:
        registry.approve_node(Account.from_key(key).address)
    return registry.address, agg, nodes


def test_outage_then_restart_records_each_once(chain, deployed, tmp_path):
    address, agg_key, (node_key, *_) = deployed
    node = Account.from_key(node_key).address
    journal = Journal(tmp_path / "journal.sqlite")
    done = []
    sync = ChainSync(Registry.at(connect(chain.rpc_url), address, agg_key), journal, RUN, on_done=lambda op, tx:
                     done.append((op.kind, op.round, tx)), retry_interval=0.2)

    # Round 1 goes through while the chain is up.
    sync.open_round(1, H, H)
    c1 = contribution(1)
    sync.record(1, node, c1, sign_contribution(node_key, c1, chain.chain_id, address), Status.SELECTED,
                Reason.NONE, node_id=7)
    sync.reject(1, reply_address(8), Reason.MALFORMED, H, node_id=8)
    assert sync.flush() == 0 and len(done) == 1  # the outcomes are held until the round is committed
    sync.release(1)
    sync.close_round(1, H)
    assert sync.flush() == 0

    # The chain goes away: round 2 waits in the journal, nothing is lost.
    chain.stop()
    sync.open_round(2, H, H)
    c2 = contribution(2)
    sync.record(2, node, c2, sign_contribution(node_key, c2, chain.chain_id, address), Status.NOT_SELECTED,
                Reason.NONE, node_id=7)
    sync.release(2)
    sync.close_round(2, H)
    assert sync.flush() == 3 and sync.last_error

    # It comes back with the same state; a restarted aggregator (new journal handle, new sync) drains it.
    chain.start()
    journal.close()
    journal = Journal(tmp_path / "journal.sqlite")
    assert not journal.add(RUN, "open", 2, "", {"global_hash": H, "circuit_id": H})  # restart re-journals: ignored
    sync = ChainSync(Registry.at(connect(chain.rpc_url), address, agg_key), journal, RUN,
                     on_done=lambda op, tx: done.append((op.kind, op.round, tx)), retry_interval=0.2)
    assert sync.drain(timeout=30) == 0

    registry = Registry.at(connect(chain.rpc_url), address)
    records = registry.records(RUN)
    assert [(r.round, r.node) for r in records] == [(1, node), (1, reply_address(8)), (2, node)]
    assert registry.get_record(RUN, 2, node).status == Status.NOT_SELECTED
    assert all(op.state == "done" and op.tx_hash for op in journal.all())
    assert len(done) == 7 and len({tx for _, _, tx in done}) == 7


def test_send_whose_receipt_was_lost_is_adopted_and_another_runs_record_never(chain, deployed, tmp_path):
    """Equal on chain (a send whose receipt a crash lost): adopted with its transaction. Different (the slot holds
    other values): the row fails loudly, and no transaction is reported for it."""
    address, agg_key, (key_a, key_b, _) = deployed
    registry = Registry.at(connect(chain.rpc_url), address, agg_key)
    run = new_run_id("lost-receipt", registry.sender.address)
    done = []
    sync = ChainSync(registry, Journal(tmp_path / "journal.sqlite"), run, on_done=lambda op, tx: done.append(op.id))
    sync.open_round(1, H, H)
    ca, cb = contribution(1, run, update="0a"), contribution(1, run, update="0b")
    sig_a, sig_b = (sign_contribution(k, c, chain.chain_id, address) for k, c in ((key_a, ca), (key_b, cb)))
    sync.record(1, Account.from_key(key_a).address, ca, sig_a, Status.SELECTED, Reason.NONE, node_id=1, score=0.5)
    sync.record(1, Account.from_key(key_b).address, cb, sig_b, Status.SELECTED, Reason.NONE, node_id=2)
    sync.release(1)
    # Prepare: the chain already holds round 1 and both slots: a's exactly as journalled (our send, receipt lost),
    # b's with another outcome (not ours to adopt).
    registry.open_round(run, 1, H, H)
    sent = registry.record_contribution(ca, sig_a, Status.SELECTED, score=0.5)
    registry.record_contribution(cb, sig_b, Status.NOT_SELECTED)

    assert sync.flush() == 0
    ops = {op.node: op for op in sync.journal.all() if op.kind == "record"}
    adopted, refused = ops[Account.from_key(key_a).address.lower()], ops[Account.from_key(key_b).address.lower()]
    assert adopted.state == "done" and adopted.tx_hash == "0x" + bytes(sent["transactionHash"]).hex()
    assert refused.state == "failed" and refused.tx_hash is None and "not adopted" in refused.last_error
    assert refused.id not in done and adopted.id in done  # on_done (the summary's tx hashes) only for ours
    assert len(registry.records(run)) == 2  # nothing re-sent
    assert sync.journal.counts(run)["failed"] == 1


def test_a_second_run_on_the_same_registry_never_adopts_the_first_ones(chain, deployed, tmp_path):
    """Issue 19.1's fault: a second run restarts at round 1 on the same registry. With its own run id it opens its
    own round 1 and records its own outcomes; the first run's stay as they were."""
    address, agg_key, (key, *_) = deployed
    node = Account.from_key(key).address
    registry = Registry.at(connect(chain.rpc_url), address, agg_key)
    results = {}
    for name, status in (("first", Status.SELECTED), ("second", Status.NOT_SELECTED)):
        run = new_run_id(name, registry.sender.address)
        sync = ChainSync(registry, Journal(tmp_path / f"{name}.sqlite"), run)
        sync.open_round(1, H, H)
        c = contribution(1, run)
        sync.record(1, node, c, sign_contribution(key, c, chain.chain_id, address), status, Reason.NONE, node_id=1)
        sync.release(1)
        sync.close_round(1, H)
        assert sync.flush() == 0 and sync.journal.counts(run)["failed"] == 0
        results[run] = status
    for run, status in results.items():
        assert [r.status for r in registry.round_records(run, 1)] == [status]
        assert registry.round_info(run, 1).state == "closed"


# ---------------------------------------------------------------------------------------------- exact resume
PHASES = ("held, summary not written", "summary written, not released", "released, not sent")
NODES = 3


def outcomes_of(round_: int, run: str, keys: list[str], chain_id: int, registry: str, attempt: str):
    """One round's gated replies: attempt 'A' (the one killed) or 'B' (the re-run) decide differently."""
    statuses = {"A": ["SELECTED", "SELECTED", "NOT_SELECTED"], "B": ["MALFORMED", "NOT_SELECTED", "SELECTED"]}
    outcomes, replies = [], {}
    for i, (key, status) in enumerate(zip(keys, statuses[attempt], strict=True)):
        node_id = 100 + i
        address = Account.from_key(key).address
        c = contribution(round_, run, update=f"{i + 1}{attempt.lower()}")
        signature = sign_contribution(key, c, chain_id, registry)
        signed = status in ("SELECTED", "NOT_SELECTED")
        replies[node_id] = Reply(node_id, message=None, contribution=c, signature=signature, update_hash=c.update_hash,
                                 address=address if signed else None)
        outcomes.append(Outcome(node_id, status, None if signed else status, address=address if signed else None,
                                claimed_address=address, update_hash=c.update_hash, score=0.1 if signed else None))
    return outcomes, replies


def aggregator(chain, address: str, agg_key: str, out, run: str, previous: dict | None = None):
    """What run_federation builds: outputs (a resume copies the summary's rounds), the journal's sender."""
    outputs = RunOutputs(out, "run", {}, console=Console(file=open("/dev/null", "w")))  # noqa: SIM115
    if previous:
        outputs.summary["rounds"] = previous["rounds"]
    registry = Registry.at(connect(chain.rpc_url), address, agg_key)
    sync = ChainSync(registry, Journal(out / "chain-journal.sqlite"), run, on_done=outputs.on_chain,
                     retry_interval=0.2)
    verification = Verification(circuit=None, checker=None, registry=registry, sync=sync, run_id=run,
                                chain_id=chain.chain_id)
    outputs.set_chain(chain.chain_id, address, run_id=run)
    committed = {r["round"]: r["new_global_hash"] for r in outputs.summary["rounds"]}
    verification.resume(committed)
    verification.sync.stop()  # the test flushes by hand, as the round's steps do: each step is a phase a kill can hit
    return outputs, verification


def play_round(outputs, verification, round_: int, keys, attempt: str, stop_after: str | None = None) -> None:
    """Open, record, write the summary, commit, as run_federation does; ``stop_after`` kills it after that step."""
    registry = verification.registry
    verification.sync.open_round(round_, H, H)
    verification.sync.flush()
    outcomes, replies = outcomes_of(round_, verification.run_id, keys, registry.chain_id, registry.address, attempt)
    verification.record(round_, outcomes, replies)
    if stop_after == PHASES[0]:
        return
    outputs.add_round(RoundLog(round_, H, outcomes), 1.0, "0x" + f"{round_:02x}" * 32, {})
    if stop_after == PHASES[1]:
        return
    if stop_after == PHASES[2]:
        verification.sync.release(round_)
        return
    verification.commit(round_, "0x" + f"{round_:02x}" * 32)


def chain_equals_summary(registry: Registry, run: str, summary: dict) -> None:
    for entry in summary["rounds"]:
        records = {r.node: r for r in registry.round_records(run, entry["round"])}
        assert len(records) == len(entry["nodes"]), (entry["round"], records)
        txs = {e["args"]["node"]: e["tx_hash"] for e in registry.events(
            "ContributionRecorded", runId=bytes.fromhex(run[2:]), round=entry["round"])}
        for node in entry["nodes"]:
            record = records[node["address"]]
            if node["status"] in ("SELECTED", "NOT_SELECTED"):
                assert (record.status, record.update_hash) == (Status[node["status"]], node["update_hash"])
            else:
                assert (record.status, record.reason) == (Status.REJECTED, Reason[node["status"]])
            assert node["tx_hash"] == txs[node["address"]]  # the summary names the transaction that recorded it
        info = registry.round_info(run, entry["round"])
        assert (info.state, info.new_global_hash) == ("closed", entry["new_global_hash"])
    assert [e["args"]["round"] for e in registry.events("RoundOpened", runId=bytes.fromhex(run[2:]))] == [1, 2]


def killed_in_round_2(chain, deployed, tmp_path, name: str, phase: str):
    """A run (its own run id) that played round 1 and was killed in round 2 after ``phase``: the journal and
    summary.json as such a kill leaves them. Returns (its output folder, its run id)."""
    address, agg_key, keys = deployed
    out = tmp_path / "run"
    run = new_run_id(name, Account.from_key(agg_key).address)
    outputs, verification = aggregator(chain, address, agg_key, out, run)
    play_round(outputs, verification, 1, keys, "A")
    play_round(outputs, verification, 2, keys, "A", stop_after=phase)
    verification.sync.stop()  # the kill: no more sending, nothing flushed after this point
    verification.sync.journal.close()
    return out, run


@pytest.mark.parametrize("phase", PHASES)
def test_resume_after_a_kill_at_any_phase_agrees_with_the_summary(chain, deployed, tmp_path, phase):
    """Issue 19.2: the aggregator is SIGKILLed in round 2 (the journal and summary.json as such a kill leaves them),
    then resumed: the killed attempt's outcomes reach the chain only if the summary holds them; otherwise they are
    superseded and the re-run's go instead."""
    address, agg_key, keys = deployed
    out, run = killed_in_round_2(chain, deployed, tmp_path, f"resume {phase}", phase)

    previous = json.loads((out / "summary.json").read_text())
    assert previous["chain"]["run_id"] == run
    outputs, verification = aggregator(chain, address, agg_key, out, run, previous)
    killed_in_summary = phase != PHASES[0]
    if not killed_in_summary:  # the summary ends at round 1: round 2 runs again and decides otherwise
        play_round(outputs, verification, 2, keys, "B")
    assert verification.finish(timeout=30) == {"pending_operations": 0, "failed_operations": 0,
                                                "superseded_operations": 0 if killed_in_summary else NODES}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    statuses = [n["status"] for n in summary["rounds"][1]["nodes"]]
    assert statuses == (["SELECTED", "SELECTED", "NOT_SELECTED"] if killed_in_summary else
                        ["MALFORMED", "NOT_SELECTED", "SELECTED"])
    registry = Registry.at(connect(chain.rpc_url), address)
    chain_equals_summary(registry, run, summary)


@pytest.mark.parametrize("phase", PHASES)
def test_sync_sends_what_a_stopped_run_left_and_agrees_with_the_summary(chain, deployed, tmp_path, phase):
    """Issue 34: a run stopped in round 2 (Ctrl-C, a kill, the chain away at its end) leaves operations in its
    journal; ``zk0agg sync`` sends them alone, without running the rest of the run: the chain then says what the
    summary says, with the summary naming each transaction, and an attempt the summary never recorded is never
    sent. A second sync finds nothing to send."""
    from aggregator.tools.sync import sync_run

    address, agg_key, keys = deployed
    out, run = killed_in_round_2(chain, deployed, tmp_path, f"sync {phase}", phase)

    result = sync_run(out, chain.rpc_url, agg_key, timeout=30)
    in_summary = phase != PHASES[0]
    assert (result["pending"], result["failed"]) == (0, 0)
    assert result["superseded"] == (0 if in_summary else NODES)
    assert result["sent"] == (NODES + 1 if in_summary else 0)  # round 2's records and its closeRound
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == ([1, 2] if in_summary else [1])
    assert summary["chain"]["pending_operations"] == 0
    chain_equals_summary(Registry.at(connect(chain.rpc_url), address), run, summary)
    assert sync_run(out, chain.rpc_url, agg_key, timeout=30)["sent"] == 0
