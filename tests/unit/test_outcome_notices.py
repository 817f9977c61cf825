"""Issue 33: a node operator learns what became of each reply, one line per round in zk0node.log (status, reason,
score, reward, tx). The aggregator puts each node's outcomes in the next message it sends that node (its next train
message, or the run's closing ``query`` message): aggregator.protocol.notices; the node logs them: node.outcomes."""

from __future__ import annotations

import json
import logging

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.protocol.notices import OutcomeNotices, round_rewards
from contracts import ChainUnavailable
from contracts.records import RoundInfo
from node.outcomes import OUTCOMES_KEY, decode_outcomes, encode_outcomes, outcome_line

TX = "0x" + "ab" * 32


@pytest.fixture
def in_a_serverapp():
    """Messages are made as in a ServerApp process (Flower reads the task's identity to make one)."""
    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 0, 0
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


def entry(round_: int = 1, kept: bool = False) -> dict:
    """A committed round as summary.json has it: node 11 selected, 22 verified but left out, 33 rejected."""
    return {"round": round_, "kept_global": kept, "nodes": [
        {"node_id": 11, "status": "SELECTED", "reason": None, "detail": "", "score": 0.07, "tx_hash": TX},
        {"node_id": 22, "status": "NOT_SELECTED", "reason": "NO_QUORUM" if kept else None, "detail": "",
         "score": 0.01, "tx_hash": TX},
        {"node_id": 33, "status": "HARMFUL", "reason": "HARMFUL", "score": -0.31, "tx_hash": None,
         "detail": "validation loss rises by 0.3100 (> τ = 0.1)"},
    ]}


def test_outcome_lines_say_status_reason_score_reward_and_tx():
    selected = {"round": 3, "status": "SELECTED", "reason": None, "score": 0.07, "reward": 49 * 10**18, "tx": TX,
                "chain": True}
    assert outcome_line(selected) == f"round 3: SELECTED, score +0.0700, reward 49.0000 ZK0, tx {TX}"
    kept = {"round": 2, "status": "NOT_SELECTED", "reason": "NO_QUORUM", "score": 0.01, "reward": 0, "tx": TX,
            "kept_global": True, "chain": True}
    assert outcome_line(kept) == (f"round 2: NOT_SELECTED (NO_QUORUM): the round kept the global model, score "
                                  f"+0.0100, no reward, tx {TX}")
    rejected = {"round": 4, "status": "UNKNOWN_NODE", "reason": "UNKNOWN_NODE", "score": None, "reward": None,
                "detail": "0xabc is not an approved node", "tx": None, "chain": True}
    assert outcome_line(rejected) == ("round 4: REJECTED UNKNOWN_NODE (0xabc is not an approved node), not on chain "
                                      "yet (the aggregator's journal sends it when the chain answers)")
    assert outcome_line({"round": 1, "status": "SELECTED", "score": 0.2, "chain": False}) == \
        "round 1: SELECTED, score +0.2000"  # a run without a chain: nothing about transactions
    assert outcome_line({"round": 1, "status": "SELECTED", "score": None, "reward": 0, "tx": TX, "chain": True}) == \
        f"round 1: SELECTED, not scored (the aggregator has no validation set), no reward, tx {TX}"


def test_outcomes_travel_as_config_text_and_a_bad_value_never_raises():
    outcomes = [{"round": 1, "status": "SELECTED", "score": 0.5}]
    config = ConfigRecord({OUTCOMES_KEY: encode_outcomes(outcomes)})  # a value Flower's config record takes
    assert decode_outcomes(config) == outcomes
    assert decode_outcomes(ConfigRecord({})) == [] and decode_outcomes(None) == []
    [bad] = decode_outcomes({OUTCOMES_KEY: "not json"})
    assert bad["status"] == "UNREADABLE" and "not json" in outcome_line(bad)


def test_each_node_is_told_its_own_outcomes_in_its_next_train_message_once(in_a_serverapp):
    notices = OutcomeNotices(chain=True)
    notices.add_round(entry(1), rewards={11: 7 * 10**18, 22: 0, 33: 0})
    shared = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"server-round": 2})})
    messages = [Message(content=shared, message_type=MessageType.TRAIN, dst_node_id=n) for n in (11, 22, 44)]
    notices.attach(messages)
    told = {m.metadata.dst_node_id: decode_outcomes(m.content["config"]) for m in messages}
    assert [o["status"] for o in told[11]] == ["SELECTED"] and told[11][0]["reward"] == 7 * 10**18
    assert told[11][0]["tx"] == TX and told[11][0]["round"] == 1
    assert [o["status"] for o in told[22]] == ["NOT_SELECTED"] and told[44] == []  # a node that did not reply
    for m in messages:  # the round's own config and arrays stay, in every message
        assert m.content["config"]["server-round"] == 2 and "arrays" in m.content
    assert OUTCOMES_KEY not in shared["config"]  # Flower's one shared content is not changed
    notices.attach(messages)  # told once: the next round's messages carry only the next round's outcomes
    assert decode_outcomes(messages[0].content["config"]) == told[11]  # (these messages were not rebuilt)
    closing = notices.closing_messages()
    assert [m.metadata.dst_node_id for m in closing] == [33]  # node 33 had no train message since: told at the end
    assert all(m.metadata.message_type == MessageType.QUERY for m in closing)
    assert decode_outcomes(closing[0].content["config"])[0]["status"] == "HARMFUL"
    assert notices.closing_messages() == []


class FakeRegistry:
    def __init__(self, info: RoundInfo | None) -> None:
        self.info = info

    def round_info(self, run_id, round_):
        if self.info is None:
            raise ChainUnavailable("cannot reach the chain")
        return self.info


def round_info(state: str, emission: int, weight_total: float) -> RoundInfo:
    return RoundInfo("0x" + "11" * 32, 1, state, 0, 0, "0x", "0x", "0x", emission, weight_total)


def test_rewards_are_the_contracts_share_of_a_closed_round():
    """ContributionRegistry._earned: emission × weight ÷ the round's total of SELECTED weights (fixed point),
    nothing for a reply not SELECTED; unknown (not told) before the round closes."""
    nodes = entry(1)["nodes"] + [{"node_id": 44, "status": "SELECTED", "score": 0.03, "tx_hash": TX, "weight": 0.3}]
    nodes[0]["weight"] = 0.7
    emission = 100 * 10**18
    rewards = round_rewards(FakeRegistry(round_info("closed", emission, 1.0)), "0x", 1, nodes)
    assert rewards == {11: emission * 7 // 10, 22: 0, 33: 0, 44: emission * 3 // 10}
    assert round_rewards(FakeRegistry(round_info("open", emission, 1.0)), "0x", 1, nodes) == {}
    assert round_rewards(FakeRegistry(None), "0x", 1, nodes) == {}  # chain away: told without a reward


def test_the_node_logs_one_line_per_outcome_from_the_closing_message(in_a_serverapp, caplog):
    from node.client_app import make_client_app

    def no_setup(context):
        raise AssertionError("the closing message loads nothing")

    app = make_client_app(no_setup)
    notices = OutcomeNotices(chain=True)
    notices.add_round(entry(2), rewards={11: 5 * 10**17, 22: 0, 33: 0})
    [closing] = [m for m in notices.closing_messages() if m.metadata.dst_node_id == 11]
    caplog.set_level(logging.INFO, logger="node.client_app")
    reply = app(closing, Context(1, 11, {}, RecordDict(), {}))
    assert reply.content["metrics"]["outcomes"] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "node.client_app"]
    assert lines == [f"outcome, round 2: SELECTED, score +0.0700, reward 0.5000 ZK0, tx {TX}"]


def test_the_chain_line_names_the_rounds_transactions_once_they_are_sent():
    """The live round table prints before the round's outcomes go to the chain (they are released once the round
    is committed); the line after it names the transactions, or says what waits in the journal."""
    from aggregator.server_app import SUMMARY_LEGEND, chain_line

    sent = {**entry(1), "close_tx_hash": "0x" + "cd" * 32}
    sent["nodes"][2]["tx_hash"] = TX  # the rejection went in its own transaction
    assert chain_line(sent) == f"round 1 on chain: 3 record(s) in tx {TX}; closed in tx 0x{'cd' * 32}"
    two = json.loads(json.dumps(sent))
    two["nodes"][2]["tx_hash"] = "0x" + "ef" * 32
    assert chain_line(two).startswith("round 1 on chain: 3 records in 2 transactions (summary.json names each)")
    waiting = entry(1)  # node 33's record and the closeRound are not sent yet
    assert chain_line(waiting) == (f"round 1 on chain: 2 record(s) in tx {TX}; 1 record(s) and closeRound not sent "
                                   "yet: the journal sends them when the chain answers")
    assert {"run_id", "chain.run_id", "rounds[].nodes[].proof_bytes"} <= set(SUMMARY_LEGEND)


def test_the_closing_message_goes_to_the_nodes_still_connected_and_a_failure_never_fails_the_run(in_a_serverapp):
    class Grid:
        def __init__(self, fail: bool = False) -> None:
            self.sent, self.fail = [], fail

        def get_node_ids(self):
            return [11, 22]  # node 33 left after its last reply: not waited for

        def send_and_receive(self, messages, timeout):
            if self.fail:
                raise RuntimeError("SuperLink gone")
            self.sent = [m.metadata.dst_node_id for m in messages]
            return [type("Reply", (), {"has_error": lambda self: False})() for _ in messages]

    notices, grid = OutcomeNotices(), Grid()
    notices.add_round(entry(3))
    assert notices.send_closing(grid, timeout=5) == 2 and grid.sent == [11, 22]
    notices.add_round(entry(3))
    assert notices.send_closing(Grid(fail=True), timeout=5) == 0
