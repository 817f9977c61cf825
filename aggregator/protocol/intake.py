"""Replies gated as they arrive: the arrival loop, and one round's intake of replies.

Flower's ``Grid.send_and_receive`` returns a round's replies only once the last one is in, and the strategy then
gated them one after another: the gate's wall time after the last reply grew with n. Here

- ``ArrivalGrid`` wraps the grid Flower's ``Strategy.start`` drives and hands each train reply to the strategy
  the moment it is pulled (the same push-then-pull loop as Flower's own ``send_and_receive``; for large updates it
  pulls only as many replies as the gate has room for, once it has, so the rest wait in the SuperLink);
- ``RoundIntake`` gates each reply in a pool of worker threads (the proof check runs in the verifier service's
  worker processes, or in EZKL's native code), sketches each verified update and puts it in the round's
  ``UpdateStore`` (on disk for large rounds: the message then drops its arrays), so that when the last reply
  arrives only the replies still in the workers are left: the gate's time after it is one reply's, not n.

Outcomes are listed in the order Flower returns the replies, whatever order the workers finish in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MessageType

from aggregator.protocol.gate import VERIFIED, Gate, Outcome, Reply, RoundContext
from aggregator.protocol.sketch import CountSketch
from aggregator.protocol.updates import UpdateStore

log = logging.getLogger(__name__)


@dataclass
class Gated:
    """One reply after the gate: its outcome, and for a verified one its key in the store and its sketch."""

    key: int
    message: Message
    reply: Reply
    outcome: Outcome
    sketch: np.ndarray | None = None
    gate_seconds: float = 0.0
    sketch_seconds: float = 0.0
    store_seconds: float = 0.0
    done_at: float = 0.0  # perf_counter when this reply was through


class RoundIntake:
    """One round's replies: gated by ``workers`` threads as they are submitted, verified ones sketched and stored."""

    def __init__(self, gate: Gate, ctx: RoundContext, sent: list[Message], store: UpdateStore,
                 sketch: CountSketch | None = None, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"gate workers must be at least 1, got {workers}")
        self.ctx, self.store, self.sketch = ctx, store, sketch
        # A spilled (large) reply's serialized arrays are let go as soon as the gate has decoded them.
        self.gate = Gate([gate.checks[0], _let_go, *gate.checks[1:]]) if store.spills else gate
        self._sent_messages = sent
        self._sent: dict[str, int] | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="zk0-gate")
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        # At most one reply per worker held at once, when they are spilled: submit waits for a free place, and the
        # arrival loop pulls a reply only once there is one (``wait_for_room``), so the others stay in Flower (the
        # SuperLink) until the gate can take them.
        self._free = workers if store.spills else None
        self._room = threading.Condition()
        self.last_arrival: float | None = None

    @property
    def sent(self) -> dict[str, int]:
        """Message id → node id of the round's instructions (Flower stamps the ids when it pushes them)."""
        if self._sent is None:
            self._sent = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent_messages}
        return self._sent

    def submit(self, message: Message) -> None:
        """Start gating ``message`` (once: a second submit of the same message does nothing)."""
        if id(message) in self._futures:
            return
        if self._free is not None:
            with self._room:
                self.wait_for_room()
                self._free -= 1
        with self._lock:
            self.last_arrival = time.perf_counter()
            node_id = self.sent.get(message.metadata.reply_to_message_id, message.metadata.src_node_id)
            future = self._pool.submit(self._admit, len(self._futures), message, node_id)
            self._futures[id(message)] = future
        if self._free is not None:
            future.add_done_callback(self._release)

    def wait_for_room(self) -> int | None:
        """Wait until the gate can take one more reply; how many it can take now (None: no bound, the round's
        replies are not spilled)."""
        if self._free is None:
            return None
        with self._room:
            self._room.wait_for(lambda: self._free > 0)
            return self._free

    def _release(self, _: Future) -> None:
        with self._room:
            self._free += 1
            self._room.notify_all()

    def collect(self, replies: Iterable[Message]) -> list[Gated]:
        """Every reply gated (those not submitted yet are submitted now), in the order of ``replies``."""
        replies = list(replies)
        for message in replies:
            self.submit(message)
        try:
            return [self._futures[id(m)].result() for m in replies]
        finally:
            self._pool.shutdown(wait=True)

    def _admit(self, key: int, message: Message, node_id: int) -> Gated:
        # The node a reply answers for: its sender, or, for the error reply the SuperLink writes when a node stops
        # sending heartbeats (sender: the SuperLink itself), the node the instruction went to.
        t0 = time.perf_counter()
        reply, outcome = self.gate(message, self.ctx, node_id=node_id)
        gated = Gated(key, message, reply, outcome, gate_seconds=time.perf_counter() - t0)
        if outcome.status == VERIFIED:
            t1 = time.perf_counter()
            if self.sketch is not None:
                gated.sketch = self.sketch(reply.arrays.values())
            t2 = time.perf_counter()
            self.store.put(key, reply.arrays)
            gated.sketch_seconds, gated.store_seconds = t2 - t1, time.perf_counter() - t2
        if self.store.spills:  # the update is in its file (or was rejected): let the message's arrays go
            reply.arrays = None
            if not message.has_error() and "arrays" in message.content:
                del message.content["arrays"]  # a reply rejected before its arrays were decoded
        gated.done_at = time.perf_counter()
        return gated


def _let_go(reply: Reply, ctx: RoundContext) -> None:
    """Not a check: drops the message's serialized arrays once ``check_well_formed`` has decoded them (400 MB a
    real-size reply), so a gate worker holds one copy of an update, not two."""
    message = reply.message
    if reply.arrays is not None and not message.has_error() and "arrays" in message.content:
        del message.content["arrays"]


class RunInterrupted(Exception):
    """The operator asked the run to stop (Ctrl-C of ``zk0agg run`` or ``demo``): the round in progress is left
    uncommitted (its outcomes stay held: a resume runs it again), the committed rounds reach the chain."""


class ArrivalGrid:
    """Flower's grid, but each train reply goes to ``on_reply`` as soon as it is pulled.

    Everything else is the wrapped grid's (``get_node_ids``, ``push_messages``, ...); ``send_and_receive`` is
    Flower's own loop (push, then pull until every reply is in or ``timeout`` has passed) with the hand-over added,
    and ``should_stop`` asked at every pull: a stop request ends the wait at once (``RunInterrupted``) rather than
    after the round's timeout.
    """

    def __init__(self, grid, on_reply: Callable[[Message], None], pull_batch: Callable[[], int | None] = lambda: None,
                 pull_interval: float | None = None, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.grid, self.on_reply, self.pull_batch, self.should_stop = grid, on_reply, pull_batch, should_stop
        self.pull_interval = pull_interval if pull_interval is not None else getattr(grid, "pull_interval", 0.5)

    def __getattr__(self, name: str):
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        train = {m.metadata.message_type for m in messages} == {MessageType.TRAIN}
        waiting = set(self.grid.push_messages(messages))
        del messages
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while waiting and (timeout is None or time.time() < end):  # nothing sent (e.g. no evaluation): no wait
            if self.should_stop():
                raise RunInterrupted("the operator asked the run to stop")
            ids, start = sorted(waiting), 0
            while start < len(ids):  # large updates: no more replies per pull than the gate has room for now
                batch = (self.pull_batch() if train else None) or len(ids)
                pulled = list(self.grid.pull_messages(ids[start:start + batch]))
                start += batch
                for reply in pulled:
                    if train:
                        self.on_reply(reply)  # waits while the gate is full (large updates)
                replies.extend(pulled)
                waiting.difference_update(m.metadata.reply_to_message_id for m in pulled)
            if not waiting:
                break
            time.sleep(self.pull_interval)
        return replies
