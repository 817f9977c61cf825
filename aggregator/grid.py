"""``PromptGrid``: Flower's Grid, with replies collected as soon as they are in.

flwr 1.41's deployment Grid (``HttpGrid.send_and_receive``) pushes a round's messages, then asks the SuperLink for
replies every 3 s: a round waits on average 1.5 s, up to 3 s, after its last reply, once for the train messages
and once for the evaluate messages. The ServerApp talks to its own SuperLink (the Runtime API, local to the
aggregator's machine), so asking every ``interval`` seconds instead costs little. Everything else is the wrapped
grid's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


class PromptGrid(Grid):
    """``grid`` whose ``send_and_receive`` polls every ``interval`` seconds."""

    def __init__(self, grid: Grid, interval: float = 0.25) -> None:
        self.grid, self.interval = grid, interval

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages``; pull their replies until all are in or ``timeout`` seconds passed (Flower's meaning)."""
        waiting = set(self.grid.push_messages(messages))
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while timeout is None or time.time() < end:
            got = list(self.grid.pull_messages(waiting))
            replies.extend(got)
            waiting.difference_update(m.metadata.reply_to_message_id for m in got)
            if not waiting:
                break
            time.sleep(self.interval)
        return replies

    # The rest is the wrapped grid's.
    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def __getattr__(self, name: str):  # anything else a Grid implementation offers (e.g. HttpGrid.close)
        return getattr(self.grid, name)
