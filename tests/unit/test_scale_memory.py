"""What the aggregator holds for large updates (issue 22): one copy of a reply in a gate worker, no more replies
pulled than the gate has room for, the mean summed a block at a time, the new global model serialized array by
array. Memory is measured with tracemalloc (numpy reports its buffers to it), on updates of 10 M values (40 MB)."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import Array, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

import aggregator.protocol.updates
from aggregator.protocol.gate import STRUCTURAL_CHECKS, VERIFIED, Gate, Reply, RoundContext, check_well_formed
from aggregator.protocol.intake import RoundIntake
from aggregator.protocol.sketch import CountSketch
from aggregator.protocol.strategy import to_record
from aggregator.protocol.updates import UpdateStore, half_error_bound
from node.params import FLAT, array_view, pack, unpack
from prover.hashing import params_hash

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0  # outside a Flower runtime
D = 10_000_000


def message(arrays: dict, node_id: int = 1) -> Message:
    TaskIdentity.node_id = node_id
    return Message(RecordDict({**pack(arrays), "metrics": MetricRecord({"num-examples": 1})}),
                   dst_node_id=0, message_type="train")


def traced_peak(fn):
    """(result, peak bytes allocated while ``fn`` ran) as tracemalloc counts them."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4),
                                   np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
                                   np.arange(5, dtype=np.int64), np.zeros((0, 3), np.float32),
                                   np.array(2.5, np.float32)])
def test_array_view_reads_what_flower_reads_without_a_copy(array):
    a = Array(array)
    view = array_view(a)
    expected = a.numpy()
    assert view.dtype == expected.dtype and view.shape == expected.shape and np.array_equal(view, expected)
    assert not view.flags.writeable  # a view on the message's bytes: nobody writes through it
    if array.size:
        assert np.shares_memory(view, np.frombuffer(a.data, np.uint8))


@pytest.mark.parametrize("change", ["truncated", "padded", "object", "magic", "stype"])
def test_array_view_refuses_what_does_not_parse_as_the_header_says(change):
    a = Array(np.arange(6, dtype=np.float32))
    if change == "truncated":
        a.data = a.data[:-1]
    elif change == "padded":
        a.data = a.data + b"\0" * 4
    elif change == "object":
        a.data = a.data.replace(b"'<f4'", b"'|O' ")
    elif change == "magic":
        a.data = b"\x93NUMPX" + a.data[6:]
    else:
        a.stype = "torch.Tensor"
    with pytest.raises(ValueError):
        array_view(a)


def test_the_gate_rejects_a_truncated_array_as_malformed():
    glob = OrderedDict(w=np.zeros(8, np.float32))
    msg = message(glob)
    msg.content["arrays"][FLAT].data = msg.content["arrays"][FLAT].data[:-4]
    _, outcome = Gate(list(STRUCTURAL_CHECKS))(msg, RoundContext(1, glob, params_hash(list(glob.values()))))
    assert outcome.status == "MALFORMED" and "bytes of data" in outcome.detail


def test_a_gate_worker_decodes_and_checks_a_reply_without_copying_it():
    """check_well_formed (decode, names, shapes, finite values, hash) of a 40 MB reply allocates a few MB: the
    arrays are views on the message's bytes (Flower's ``Array.numpy()`` would copy all 40 MB; ``np.isfinite`` of
    the whole update would make 10 MB more)."""
    glob = OrderedDict(w=np.zeros((100, 30), np.float32), body=np.zeros(D, np.float32))
    update = OrderedDict((k, v + np.float32(0.5)) for k, v in glob.items())
    msg = message(update)
    del update
    ctx = RoundContext(1, glob, params_hash(list(glob.values())))
    reply = Reply(node_id=1, message=msg)
    _, peak = traced_peak(lambda: check_well_formed(reply, ctx))
    assert peak < 0.15 * 4 * D, peak
    assert reply.update_hash == params_hash([np.full((100, 30), 0.5, np.float32), np.full(D, 0.5, np.float32)])
    assert np.shares_memory(reply.arrays["body"], np.frombuffer(msg.content["arrays"][FLAT].data, np.uint8))


def test_the_arrival_loop_pulls_a_large_reply_only_when_the_gate_has_room(tmp_path):
    """Spilled round, 2 workers, a check of 0.2 s: whenever ``wait_for_room`` returns, fewer than 2 replies are in
    the gate, and what it returns is how many more the gate can take; no reply is ever held waiting outside it."""
    glob = OrderedDict(w=np.zeros(16, np.float32))

    def slow(reply, ctx):
        time.sleep(0.2)

    intake = RoundIntake(Gate([*STRUCTURAL_CHECKS, slow]), RoundContext(1, glob, params_hash([glob["w"]])), [],
                         UpdateStore(glob, tmp_path), workers=2)
    in_gate, seen = [0], []
    lock = threading.Lock()

    def done(_):
        with lock:
            in_gate[0] -= 1

    replies = []
    for i in range(6):
        room = intake.wait_for_room()
        with lock:
            seen.append((room, in_gate[0]))
            in_gate[0] += 1
        replies.append(message(OrderedDict(w=np.full(16, i, np.float32)), node_id=i + 1))
        intake.submit(replies[-1])
        intake._futures[id(replies[-1])].add_done_callback(done)
    gated = intake.collect(replies)
    assert all(g.outcome.status == VERIFIED for g in gated)
    assert all(in_gate_then < 2 and room == 2 - in_gate_then for room, in_gate_then in seen), seen
    assert any(in_gate_then == 1 for _, in_gate_then in seen)  # it did wait for a worker, not for both
    assert RoundIntake(Gate(), RoundContext(1, glob, ""), [], UpdateStore(glob)).wait_for_room() is None  # unbound


@pytest.mark.parametrize("spill,precision", [(False, "float32"), (True, "float32"), (True, "float16")])
def test_the_mean_is_summed_a_block_at_a_time_to_the_same_bits(tmp_path, monkeypatch, spill, precision):
    """With blocks of 2^18 values (the body cut mid-block), the mean has the bits of the whole-array float64 mean
    (float16 steps: within their bound), and allocates the float32 result and about a block: not an update-sized
    float64 sum and an update read back (nor, for float16 steps, an update-sized step when they are written)."""
    monkeypatch.setattr(aggregator.protocol.updates, "BLOCK", 1 << 18)
    rng = np.random.default_rng(5)
    template = OrderedDict(a=np.zeros((3, 1001), np.float32), body=np.zeros(D, np.float32))
    store = UpdateStore(template, tmp_path if spill else None, precision)
    updates = {k: OrderedDict((n, rng.standard_normal(t.shape, dtype=np.float32)) for n, t in template.items())
               for k in range(4)}
    _, put_peak = traced_peak(lambda: [store.put(k, u) for k, u in updates.items()])
    mean, peak = traced_peak(lambda: store.mean([0, 2, 3]))
    for n in template:
        expected = np.mean([updates[k][n] for k in (0, 2, 3)], axis=0, dtype=np.float64)
        if precision == "float32":
            assert np.array_equal(mean[n], expected.astype(np.float32))
        else:
            bound = half_error_bound([updates[k][n] for k in (0, 2, 3)], [1 / 3] * 3)
            assert np.all(np.abs(mean[n] - expected) <= bound + np.spacing(np.abs(expected).astype(np.float32)))
    assert peak < 1.2 * 4 * (D + 3 * 1001), peak  # the result (40 MB) and a few blocks of 1-2 MB
    assert put_peak < 0.1 * 4 * D, put_peak  # a few blocks
    store.close()


def test_the_new_global_model_is_serialized_array_by_array():
    """The new global model (10 arrays, 40 MB) written into the one vector's bytes array by array, each let go once
    written: the model is held about once while it is serialized, not twice (a whole flat copy, then its bytes)."""
    arrays = OrderedDict((f"p{i}", np.full(D // 10, i, np.float32)) for i in range(10))
    expected = pack(arrays)
    record, peak = traced_peak(lambda: to_record(arrays))
    assert not arrays  # each let go once written
    assert list(record) == [FLAT] and record[FLAT].data == expected["arrays"][FLAT].data
    assert peak < 1.3 * 4 * D, peak  # the vector's bytes (40 MB, the buffer's growth room) and one array
    assert np.array_equal(unpack(record, expected["layout"])["p7"], np.full(D // 10, 7, np.float32))


def test_a_released_sketch_hashes_the_same_codes_again():
    sketch = CountSketch(64, 7, 10_000)
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    before = sketch([x])
    sketch.release()
    assert sketch._codes is None
    assert np.array_equal(sketch([x]), before)


def test_a_gated_reply_is_freed_at_once_not_when_the_garbage_collector_runs(tmp_path):
    """A spilled round's reply, once gated and kept, holds nothing: its 40 MB are freed when the gate lets them go,
    with the cyclic garbage collector off (Flower's ``content.array_records`` view refers to itself: a gate that
    used it left every reply's arrays to the collector's next full pass)."""
    glob = OrderedDict(w=np.zeros(D, np.float32))
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        msg = message(OrderedDict(w=np.full(D, 0.25, np.float32)))
        assert tracemalloc.get_traced_memory()[0] - base > 4 * D  # the reply's bytes are traced
        intake = RoundIntake(Gate(list(STRUCTURAL_CHECKS)), RoundContext(1, glob, params_hash([glob["w"]])), [],
                             UpdateStore(glob, tmp_path), CountSketch(64, 1, D), workers=1)
        intake.submit(msg)
        (gated,) = intake.collect([msg])
        assert gated.outcome.status == VERIFIED and gated.sketch is not None
        intake.sketch.release()  # the round's bucket codes (20 MB here), as the strategy does after the intake
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 0.05 * 4 * D, held
