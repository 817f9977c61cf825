"""The model on the wire (``node.params.pack``/``unpack``): one float32 vector and its layout, checked by whoever
receives it: the gate (MALFORMED) and the node (a clear ValueError before anything is trained or loaded)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity

from aggregator.protocol.gate import STRUCTURAL_CHECKS, VERIFIED, Gate, RoundContext
from aggregator.protocol.strategy import GatedMultiKrum
from node.params import FLAT, get_trainable, pack, set_trainable, unpack
from prover.hashing import params_hash

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0  # outside a Flower runtime

GLOBAL = OrderedDict(w=np.arange(12, dtype=np.float32).reshape(4, 3), b=np.ones(3, np.float32),
                     s=np.array(2.5, np.float32))


def gate(content: RecordDict):
    """The structural gate's outcome for a reply with ``content``, in a round whose global model is GLOBAL."""
    TaskIdentity.node_id = 7
    msg = Message(content, dst_node_id=0, message_type="train")
    return Gate(list(STRUCTURAL_CHECKS))(msg, RoundContext(1, GLOBAL, params_hash(list(GLOBAL.values()))))[1]


def reply(arrays: dict, **records) -> RecordDict:
    return RecordDict({**pack(arrays), "metrics": MetricRecord({"num-examples": 8}), **records})


def test_a_model_round_trips_as_views_on_one_vector_and_hashes_the_same():
    records = pack(GLOBAL)
    assert list(records["arrays"]) == [FLAT] and records["arrays"][FLAT].shape == (12 + 3 + 1,)
    assert np.array_equal(records["arrays"][FLAT].numpy(), np.concatenate([a.ravel() for a in GLOBAL.values()]))
    got = unpack(records["arrays"], records["layout"])
    assert list(got) == list(GLOBAL)
    for name, array in GLOBAL.items():
        assert got[name].shape == array.shape and got[name].dtype == np.float32
        assert np.array_equal(got[name], array) and not got[name].flags.writeable
        if array.size:  # a view on the message's bytes, not a copy
            assert np.shares_memory(got[name], np.frombuffer(records["arrays"][FLAT].data, np.uint8))
    assert params_hash(list(got.values())) == params_hash(list(GLOBAL.values()))  # the update hash is unchanged


def test_a_model_of_many_arrays_is_a_few_flower_objects():
    """One Flower object per Array plus one per 5 MiB chunk, each pulled with its own request: 100 arrays were
    200 objects in a message; one vector is 2 (its chunk, the Array) whatever the count of arrays."""
    many = OrderedDict((f"p{i}", np.full((3, 5), i, np.float32)) for i in range(100))
    per_array = len(get_all_nested_objects(Message(RecordDict({"arrays": ArrayRecord(
        {n: Array(a) for n, a in many.items()})}), dst_node_id=1, message_type="train")))
    packed = len(get_all_nested_objects(Message(RecordDict(pack(many)), dst_node_id=1, message_type="train")))
    assert per_array >= 200 and packed <= 6, (per_array, packed)


def test_a_well_formed_reply_passes_the_gate():
    update = OrderedDict((k, v + np.float32(0.5)) for k, v in GLOBAL.items())
    outcome = gate(reply(update))
    assert outcome.status == VERIFIED


@pytest.mark.parametrize("change,detail", [
    ("shorter", "values, its layout"),  # the vector is not the layout's size
    ("renamed", "names differ"),  # a layout for another model
    ("reshaped", "has shape"),
    ("reordered", "names differ"),
    ("extra array", "exactly one array"),
    ("no layout", "no 'layout'"),
    ("bad layout", "layout"),
    ("second record", "exactly one ArrayRecord"),
    ("float64", "float32 vector"),
    ("nan", "NaN"),
])
def test_a_reply_off_the_global_models_layout_is_malformed(change, detail):
    content = reply(GLOBAL)
    if change == "shorter":
        content["arrays"] = pack(OrderedDict(w=GLOBAL["w"], b=GLOBAL["b"][:2], s=GLOBAL["s"]))["arrays"]
    elif change == "renamed":
        content["layout"] = pack(OrderedDict((k + "x", v) for k, v in GLOBAL.items()))["layout"]
    elif change == "reshaped":
        content["layout"] = pack(OrderedDict(w=GLOBAL["w"].reshape(3, 4), b=GLOBAL["b"], s=GLOBAL["s"]))["layout"]
    elif change == "reordered":
        content["layout"] = pack(OrderedDict((k, GLOBAL[k]) for k in ("b", "w", "s")))["layout"]
    elif change == "extra array":
        content["arrays"][FLAT + "2"] = Array(np.zeros(3, np.float32))
    elif change == "no layout":
        del content["layout"]
    elif change == "bad layout":
        content["layout"] = ConfigRecord({"names": ["w"], "ndims": [-1], "dims": []})
    elif change == "second record":
        content["more"] = pack(GLOBAL)["arrays"]
    elif change == "float64":
        content["arrays"] = ArrayRecord({FLAT: Array(content["arrays"][FLAT].numpy().astype(np.float64))})
    else:
        content["arrays"] = pack(OrderedDict(w=np.full((4, 3), np.nan, np.float32), b=GLOBAL["b"],
                                             s=GLOBAL["s"]))["arrays"]
    outcome = gate(content)
    assert outcome.status == "MALFORMED" and detail in outcome.detail, outcome.detail


def test_pack_refuses_what_the_wire_cannot_carry():
    with pytest.raises(ValueError, match="float32 only"):
        pack({"w": np.zeros(3, np.float64)})


def test_a_node_refuses_a_global_model_it_cannot_load():
    """A node's model of another shape (or a vector cut short) is refused with a clear error before training."""
    policy = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    mine = get_trainable(policy)
    records = pack(OrderedDict((k, v + np.float32(1)) for k, v in mine.items()))
    set_trainable(policy, unpack(records["arrays"], records["layout"]))  # read-only views load without a copy
    assert np.array_equal(get_trainable(policy)["0.weight"], mine["0.weight"] + 1)
    other = pack(get_trainable(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))))
    with pytest.raises(ValueError, match="has shape"):
        set_trainable(policy, unpack(other["arrays"], other["layout"]))
    with pytest.raises(ValueError, match="values, its layout"):
        unpack(other["arrays"], records["layout"])
    with pytest.raises(ValueError, match="layout needs 'names'"):
        unpack(records["arrays"], ConfigRecord({}))


def test_the_strategy_sends_the_layout_beside_the_model_it_hashes():
    """Flower's loop hands the strategy the ArrayRecord alone: its train and evaluate messages carry the layout too,
    and the round's global hash is the per-array hash of the model."""
    layout = pack(GLOBAL)["layout"]
    strategy = GatedMultiKrum(gate=Gate(list(STRUCTURAL_CHECKS)), hash_arrays=lambda a: params_hash(list(a.values())),
                              num_malicious_nodes=0, num_nodes_to_select=1, layout=layout)

    class Nodes:
        def get_node_ids(self):
            return [1, 2]

    for sent in (strategy.configure_train(1, pack(GLOBAL)["arrays"], ConfigRecord({}), Nodes()),
                 strategy.configure_evaluate(1, pack(GLOBAL)["arrays"], ConfigRecord({}), Nodes())):
        assert len(sent) == 2
        for message in sent:
            got = unpack(message.content["arrays"], message.content["layout"])
            assert all(np.array_equal(got[k], GLOBAL[k]) for k in GLOBAL)
    assert strategy.rounds[1].global_hash == params_hash(list(GLOBAL.values()))
