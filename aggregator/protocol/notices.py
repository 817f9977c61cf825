"""How a node learns what became of its reply: status, reason, score, reward and the transaction that records it.

Each node is told in the next message the aggregator sends it anyway: the outcome of its round-r reply rides in
its round r+1 train message (config key ``node.outcomes.OUTCOMES_KEY``), and what is left after the last round
in one closing ``query`` message; the node logs one line per round (``node.outcomes.outcome_line``). Why this way:

- no chain access on the node: ``zk0node start`` takes no RPC endpoint, and the rejections a node most needs to
  hear of (its wallet is not approved, its signature does not hold: UNKNOWN_NODE, BAD_SIGNATURE, STALE) are
  recorded on chain under a key derived from its Flower node id (``verification.reply_address``), not its wallet,
  so the node could not find them there by its address; a run without a chain (``--no-verify``) still tells it;
- the next message rather than the round's own evaluate message: a round's outcomes go to the chain only once the
  round is committed (after its evaluation), so only then are its transaction and reward (the round's emission ×
  the reply's score ÷ the round's score total, as the contract computes it once the round is closed) known; and an
  evaluate message goes out only with ``fraction-evaluate`` > 0;
- each message carries only its destination node's outcomes; they are public on chain anyway. They are not
  signed: the node can look the transaction up, and nothing it does depends on them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from contracts import ChainError
from contracts.records import earned
from contracts.typed_data import score_to_fixed, weight_to_fixed
from node.outcomes import OUTCOMES_KEY, encode_outcomes

log = logging.getLogger(__name__)

CLOSING_TIMEOUT = 120.0  # seconds the closing message waits for the nodes' acknowledgements, at most


def round_rewards(registry, run_id: str, round_: int, nodes: list[dict]) -> dict[int, int]:
    """Reward-token units each node's record of a closed round earned, keyed by Flower node id: the contract's
    ``_earned`` (emission × score ÷ score total, for SELECTED records with a positive score); empty while the
    round is not closed on chain or the chain does not answer."""
    try:
        info = registry.round_info(run_id, round_)
    except ChainError as err:
        log.warning("round %d: rewards not read (%s): the nodes are told without them", round_, err)
        return {}
    if info.state != "closed":
        return {}
    total = score_to_fixed(info.weight_total)  # the chain's sum: the same fixed point as a weight
    rewards = {}
    for n in nodes:
        weight = n.get("weight") or 0.0
        fixed = weight_to_fixed(weight) if n["status"] == "SELECTED" else 0
        rewards[n["node_id"]] = earned(info.emission, fixed, total)
    return rewards


class OutcomeNotices:
    """Outcomes not told yet, per Flower node id: added once a round is committed (``add_round``), put into the
    next train message to each node (``attach``), the rest into the run's closing message (``closing_messages``)."""

    def __init__(self, chain: bool = False) -> None:
        self.chain = chain  # a verified run: an outcome without a transaction is one not sent yet
        self._pending: dict[int, list[dict]] = {}
        self._lock = threading.Lock()

    def add_round(self, entry: dict, rewards: dict[int, int] | None = None) -> None:
        """A committed round's summary entry (its nodes' outcomes and transactions as summary.json has them)."""
        rewards = rewards or {}
        with self._lock:
            for n in entry["nodes"]:
                outcome = {"round": entry["round"], "status": n["status"], "reason": n.get("reason"),
                           "detail": n.get("detail") or "", "score": n.get("score"),
                           "reward": rewards.get(n["node_id"]), "tx": n.get("tx_hash"),
                           "kept_global": bool(entry.get("kept_global")), "chain": self.chain}
                self._pending.setdefault(int(n["node_id"]), []).append(outcome)

    def pending(self, node_id: int) -> list[dict]:
        with self._lock:
            return list(self._pending.get(node_id, []))

    def attach(self, messages: Iterable[Message]) -> None:
        """Each message's node gets its untold outcomes in its own copy of the config (Flower's strategy gives all
        of a round's messages one content); they count as told."""
        with self._lock:
            for message in messages:
                told = self._pending.pop(message.metadata.dst_node_id, None)
                if told:
                    content = message.content
                    config = ConfigRecord({**dict(content["config"]), OUTCOMES_KEY: encode_outcomes(told)})
                    message.content = RecordDict({**{k: v for k, v in content.items() if k != "config"},
                                                  "config": config})

    def closing_messages(self) -> list[Message]:
        """One ``query`` message per node with outcomes left to tell (the last round's); they count as told."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [Message(RecordDict({"config": ConfigRecord({OUTCOMES_KEY: encode_outcomes(told)})}),
                        dst_node_id=node_id, message_type=MessageType.QUERY)
                for node_id, told in sorted(pending.items()) if told]

    def send_closing(self, grid, timeout: float = CLOSING_TIMEOUT) -> int:
        """Send the closing messages to the nodes still connected (one that left is not waited for: it is simply
        not told) and wait up to ``timeout`` s for them to acknowledge. Returns how many acknowledged."""
        messages = self.closing_messages()
        try:
            online = set(grid.get_node_ids())
            messages = [m for m in messages if m.metadata.dst_node_id in online]
            if not messages:
                return 0
            replies = list(grid.send_and_receive(messages, timeout=timeout))
        except Exception as err:  # noqa: BLE001 - telling the nodes must never fail a finished run
            log.warning("the closing outcome messages were not delivered: %s", err)
            return 0
        acknowledged = sum(1 for r in replies if not r.has_error())
        if acknowledged < len(messages):
            log.info("%d of %d node(s) acknowledged their last outcomes", acknowledged, len(messages))
        return acknowledged
