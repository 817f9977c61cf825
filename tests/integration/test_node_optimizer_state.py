"""A node that keeps its AdamW state across rounds (``keep-optimizer``): the moments stay in its own Flower
context.state, go on in the next round, and never travel in the reply (real LeRobot SmolVLA, tiny spec)."""

from __future__ import annotations

from flwr.app import ConfigRecord, RecordDict

from node.client_app import OPTIMIZER_STATE, NodeSetup, load_node, train_round
from node.params import pack
from node.train import snapshot

STEPS = 3


def _round(node, glob, server_round: int, state: RecordDict, keep: bool) -> RecordDict:
    config = ConfigRecord({"server-round": server_round, "local-steps": STEPS, "batch-size": 4,
                           "learning-rate": 1e-3, "proximal-mu": 0.01, "seed": 0, "keep-optimizer": keep})
    return train_round(node, RecordDict({**pack(glob), "config": config}), state=state)


def test_the_kept_optimizer_state_goes_on_and_stays_on_the_node(synthetic, cache_dir):
    node = load_node(NodeSetup(dataset=synthetic.nodes[0], cache_dir=str(cache_dir)))
    glob = snapshot(node.bundle.policy)
    state = RecordDict()
    first = _round(node, glob, 1, state, keep=True)
    kept = state[OPTIMIZER_STATE].to_torch_state_dict()
    assert float(kept["0.step"]) == STEPS
    second = _round(node, glob, 2, state, keep=True)
    assert float(state[OPTIMIZER_STATE].to_torch_state_dict()["0.step"]) == 2 * STEPS  # carried on, not restarted
    for reply in (first, second):  # what is sent (and proved): the trainable set and metrics, no moments
        assert set(reply.keys()) == {"arrays", "layout", "metrics"}
        assert set(reply["arrays"].keys()) == set(pack(glob)["arrays"].keys())
    fresh_state = RecordDict()
    _round(node, glob, 2, fresh_state, keep=False)  # the default: a fresh AdamW each round, nothing kept
    assert OPTIMIZER_STATE not in fresh_state
