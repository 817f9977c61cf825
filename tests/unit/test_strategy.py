"""The gate and Krum over verified replies, on hand-built Flower messages (no engine needed)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from aggregator.gate import STRUCTURAL_CHECKS, VERIFIED, Gate, RoundContext
from aggregator.strategy import GatedMultiKrum
from node.params import numpy_to_arrays
from prover.hashing import params_hash

TaskIdentity.run_id = 1  # Flower stamps messages with their run and node; outside a runtime we set them.
TaskIdentity.node_id = 0
TaskIdentity.task_id = 0

GLOBAL = OrderedDict(w=np.zeros((4, 3), np.float32), b=np.zeros(3, np.float32))


def reply(node_id: int, arrays: dict | None = None, metrics: dict | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(metrics or {"num-examples": 10, "train_loss": 1.0})})
    if arrays is not None:
        content["arrays"] = numpy_to_arrays(arrays)
    TaskIdentity.node_id = node_id  # the message's source node, as the runtime would stamp it
    return Message(content, dst_node_id=0, message_type="train")


def honest(seed: int) -> OrderedDict:
    rng = np.random.default_rng(seed)
    return OrderedDict((k, (v + rng.normal(0, 0.01, v.shape)).astype(np.float32)) for k, v in GLOBAL.items())


def run_round(strategy: GatedMultiKrum, replies: list[Message]):
    # Prepare: what configure_train records for the round (hash and context), without a Grid.
    strategy._context[1] = RoundContext(1, dict(GLOBAL), params_hash(list(GLOBAL.values())))
    from aggregator.strategy import RoundLog

    strategy.rounds[1] = RoundLog(1, strategy._context[1].global_hash)
    arrays, metrics = strategy.aggregate_train(1, replies)
    return arrays, {o.node_id: o for o in strategy.rounds[1].outcomes}


def make_strategy(f: int = 1, m: int = 1) -> GatedMultiKrum:
    return GatedMultiKrum(gate=Gate(list(STRUCTURAL_CHECKS)), hash_arrays=lambda a: params_hash(list(a.values())),
                          num_malicious_nodes=f, num_nodes_to_select=m)


def test_krum_does_not_select_outlier():
    outlier = OrderedDict((k, v + 5.0) for k, v in GLOBAL.items())
    replies = [reply(i, honest(i)) for i in range(1, 5)] + [reply(99, outlier)]
    arrays, outcomes = run_round(make_strategy(f=1, m=3), replies)
    assert outcomes[99].status == "NOT_SELECTED"
    assert sum(o.status == "SELECTED" for o in outcomes.values()) == 3
    agg = arrays["w"].numpy()
    assert np.abs(agg).max() < 0.1  # the aggregate stays near the honest updates


def test_malformed_reply_rejected_without_breaking_round():
    bad_shape = OrderedDict(w=np.zeros((5, 3), np.float32), b=np.zeros(3, np.float32))
    nan = honest(7)
    nan["b"][0] = np.nan
    replies = [reply(i, honest(i)) for i in range(1, 6)]
    replies += [reply(50, bad_shape), reply(51, nan), reply(52, None),
                reply(53, honest(8), metrics={"train_loss": 1.0})]
    arrays, outcomes = run_round(make_strategy(f=1, m=1), replies)
    assert arrays is not None
    for node in (50, 51, 52, 53):
        assert outcomes[node].status == "MALFORMED", outcomes[node]
    assert "shape" in outcomes[50].detail and "NaN" in outcomes[51].detail
    assert sum(o.status == "SELECTED" for o in outcomes.values()) == 1


def test_too_few_verified_keeps_global_model():
    replies = [reply(i, honest(i)) for i in range(1, 4)]  # 3 verified, f=1 needs more than 4
    arrays, outcomes = run_round(make_strategy(f=1), replies)
    assert arrays is None  # Flower keeps the global model when aggregate_train returns None
    assert all(o.status == "NOT_SELECTED" and o.reason == "NO_QUORUM" for o in outcomes.values())


def test_gate_records_first_failure_only():
    calls = []

    def second(reply, ctx):
        calls.append(reply.node_id)

    gate = Gate(checks=[*STRUCTURAL_CHECKS, second])
    ctx = RoundContext(1, dict(GLOBAL), "0x00")
    _, ok = gate(reply(1, honest(1)), ctx)
    _, bad = gate(reply(2, None), ctx)
    assert ok.status == VERIFIED and bad.status == "MALFORMED"
    assert calls == [1]  # a rejected reply is not checked further


@pytest.mark.parametrize("field,value", [("rounds", 0), ("krum_f", -1), ("fraction_evaluate", 2.0)])
def test_config_rejects_bad_values(field, value):
    from aggregator.config import FederationConfig
    from node.errors import UserError

    with pytest.raises(UserError):
        FederationConfig(**{field: value})


def test_config_from_flower_run_config():
    from aggregator.config import FederationConfig

    cfg = FederationConfig.from_run_config({"rounds": 4, "krum-f": 1, "local-steps": 5, "unknown-key": 1})
    assert (cfg.rounds, cfg.krum_f, cfg.local_steps) == (4, 1, 5)


class NodesOnline:
    """The one thing ``configure_train`` asks of Flower's Grid: which nodes are connected."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def test_nodes_that_never_reply_are_named_in_the_round():
    """A node that hangs sends nothing: the round goes on with the others and names it. A node that dies is answered
    for by the SuperLink (an error reply from node 1, Flower's own): the reply counts as that node's."""
    from uuid import uuid4

    from flwr.app import ConfigRecord, Error

    strategy = make_strategy(f=0, m=2)
    sent = strategy.configure_train(1, numpy_to_arrays(GLOBAL), ConfigRecord({}), NodesOnline([1, 2, 3, 4, 5]))
    by_node = {}
    for m in sent:  # what Flower's Grid does when it pushes them
        m.metadata.__dict__["_message_id"] = str(uuid4())
        by_node[m.metadata.dst_node_id] = m
    replies = []
    for i in (1, 3, 4):
        TaskIdentity.node_id = i
        replies.append(Message(RecordDict({"arrays": numpy_to_arrays(honest(i)),
                                           "metrics": MetricRecord({"num-examples": 10})}), reply_to=by_node[i]))
    TaskIdentity.node_id = 1  # the SuperLink: node 5 missed its heartbeats
    replies.append(Message(Error(code=3, reason="Error: Node Unavailable"), reply_to=by_node[5]))
    arrays, _ = strategy.aggregate_train(1, replies)
    rlog = strategy.rounds[1]
    assert rlog.no_reply == [2]
    outcomes = {o.node_id: o for o in rlog.outcomes}
    assert sorted(outcomes) == [1, 3, 4, 5]
    assert outcomes[5].status == "MALFORMED" and "Unavailable" in outcomes[5].detail
    assert arrays is not None and sum(o.status == "SELECTED" for o in outcomes.values()) == 2
