"""What a node keeps across rounds in its own Flower context.state, never in the reply (real LeRobot SmolVLA, tiny
spec): its AdamW state (``keep-optimizer``), which goes on in the next round, and the model it trained
(``drift-correction``), which corrects the next round's steps with the mean update the server sends."""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from node.client_app import OPTIMIZER_STATE, NodeSetup, load_node, train_round
from node.drift import MEAN_UPDATE, MEAN_UPDATE_ROUND, OWN_UPDATE
from node.params import pack, unpack
from node.train import snapshot

STEPS = 3


def _round(node, glob, server_round: int, state: RecordDict, keep: bool, drift: bool = False,
           lr: float = 1e-3, mean_update: tuple[int, dict] | None = None) -> RecordDict:
    config = ConfigRecord({"server-round": server_round, "local-steps": STEPS, "batch-size": 4,
                           "learning-rate": lr, "proximal-mu": 0.01, "seed": 0, "keep-optimizer": keep,
                           "drift-correction": drift})
    content = RecordDict({**pack(glob), "config": config})
    if mean_update is not None:  # what the strategy adds: the round it is from, and Δ in the model's layout
        config[MEAN_UPDATE_ROUND] = mean_update[0]
        content[MEAN_UPDATE] = pack(mean_update[1])["arrays"]
    return train_round(node, content, state=state)


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


def test_drift_correction_moves_each_step_towards_the_federation(synthetic, cache_dir):
    """With ``drift-correction`` the K steps of a round each add (Δ − Δ_i) / K: Δ the mean update the server averaged
    in the round before (sent beside the global model), Δ_i the update this node trained in it, kept in its
    context.state (node/drift.py). At a learning rate of 1e-12 training moves nothing measurable, so the round ends
    at θ_t + Δ − Δ_i; with a mean from a round the node did not train, at θ_t."""
    node = load_node(NodeSetup(dataset=synthetic.nodes[0], cache_dir=str(cache_dir)))
    glob = snapshot(node.bundle.policy)
    state = RecordDict()
    first = _round(node, glob, 1, state, keep=False, drift=True)
    own = {name: a.numpy() for name, a in state[OWN_UPDATE].items()}
    np.testing.assert_allclose(own["model.action_out_proj.bias"],
                               unpack(first["arrays"], first["layout"])["model.action_out_proj.bias"]
                               - glob["model.action_out_proj.bias"], atol=1e-7)
    mean = {name: np.full_like(a, 0.01) for name, a in glob.items()}  # the federation's mean update in round 1
    moved = {name: a + 0.02 for name, a in glob.items()}  # the global model after the server's step
    second = _round(node, moved, 2, state, keep=False, drift=True, lr=1e-12, mean_update=(1, mean))
    sent = snapshot(node.bundle.policy)
    for name, g in moved.items():
        np.testing.assert_allclose(sent[name], g + mean[name] - own[name], atol=1e-5)
    _round(node, moved, 4, state, keep=False, drift=True, lr=1e-12, mean_update=(3, mean))  # round 3 missed
    assert all(np.allclose(a, moved[name], atol=1e-6) for name, a in snapshot(node.bundle.policy).items())
    for reply in (first, second):  # the node's own update never travels
        assert set(reply.keys()) == {"arrays", "layout", "metrics"}
