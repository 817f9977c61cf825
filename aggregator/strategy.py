"""Krum over verified replies only: Flower's MultiKrum, with the gate in front of it.

Flower's ``MultiKrum.aggregate_train`` raises for the whole round if one reply is malformed and does not say which
replies it selected. This subclass gates every reply first, runs Flower's own ``select_multikrum`` and
``aggregate_arrayrecords`` on the verified ones, and keeps each reply's outcome for the round's records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import MultiKrum
from flwr.serverapp.strategy.multikrum import select_multikrum
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from aggregator.gate import VERIFIED, Gate, Outcome, RoundContext
from node.params import arrays_to_numpy

log = logging.getLogger(__name__)

@dataclass
class RoundLog:
    """One round as the aggregator saw it: the global model it sent and every reply's outcome."""

    round: int
    global_hash: str
    outcomes: list[Outcome] = field(default_factory=list)
    kept_global: bool = False
    note: str = ""
    no_reply: list[int] = field(default_factory=list)  # nodes sent the round that did not answer within its timeout
    validation_loss: float | None = None  # L_val(θ_g) on the round's validation batches (scores are relative to it)


class GatedMultiKrum(MultiKrum):
    """MultiKrum (Krum when ``num_nodes_to_select == 1``) over the replies that pass ``gate``."""

    def __init__(self, gate: Gate, hash_arrays: Callable[[dict], str], verification=None, validator=None,
                 harm_tolerance: float = 0.0, rise_tolerance: float = 0.0, min_gain: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.hash_arrays = hash_arrays
        self.verification = verification  # aggregator.verification.Verification, or None: no proofs, no chain
        self.validator = validator  # aggregator.validation.Validator, or None: no validation score
        self.harm_tolerance, self.rise_tolerance = harm_tolerance, rise_tolerance
        self.min_gain = min_gain  # a reply is averaged in only if its score is above min_gain × L_val(θ_g)
        self.rounds: dict[int, RoundLog] = {}
        self._context: dict[int, RoundContext] = {}
        self._sent: dict[int, list[Message]] = {}
        self.round_offset = 0  # rounds done before this process started (a resumed run): Flower counts from 1

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Open the round: hash the global model, put the hash in the config every node receives."""
        server_round += self.round_offset
        global_arrays = arrays_to_numpy(arrays)
        global_hash = self.hash_arrays(global_arrays)
        config = ConfigRecord(dict(config))
        config["global-hash"] = global_hash
        if self.verification is not None:
            ctx = self.verification.open(server_round, global_arrays, global_hash, config)
        else:
            ctx = RoundContext(server_round, global_arrays, global_hash)
        ctx.harm_tolerance, ctx.rise_tolerance = self.harm_tolerance, self.rise_tolerance
        self.rounds[server_round] = RoundLog(server_round, global_hash)
        if self.validator is not None:
            ctx.validation = self.validator.open(server_round, global_arrays)
            self.rounds[server_round].validation_loss = ctx.validation.global_loss
        self._context[server_round] = ctx
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent[server_round] = messages  # Flower stamps their message ids when it pushes them
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Gate every reply, then Krum over the verified ones; keep the global model without a quorum."""
        server_round += self.round_offset
        ctx, rlog = self._context.pop(server_round), self.rounds[server_round]
        verified: list[tuple[Message, Outcome]] = []
        gated = {}
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent.pop(server_round, [])}
        for msg in replies:
            # The node a reply answers for: its sender, or, for the error reply the SuperLink writes when a node
            # stops sending heartbeats (sender: the SuperLink itself), the node the instruction went to.
            node_id = sent.get(msg.metadata.reply_to_message_id, msg.metadata.src_node_id)
            reply, outcome = self.gate(msg, ctx, node_id=node_id)
            gated[outcome.node_id] = reply
            rlog.outcomes.append(outcome)
            if outcome.status == VERIFIED and outcome.approval_unchecked:  # an outage: no verdict, not averaged
                outcome.status = "NOT_SELECTED"
                outcome.detail = "approval not checked (chain unavailable): held out; the registry decides its record"
            elif outcome.status == VERIFIED:
                verified.append((msg, outcome))
        rlog.no_reply = sorted(set(sent.values()) - set(gated))
        if rlog.no_reply:  # a node that hung: Flower waited for it until the round's timeout
            log.warning("round %d: no reply within the round's timeout from node(s) %s", server_round,
                        ", ".join(map(str, rlog.no_reply)))
        useful = None if ctx.validation is None else self.min_gain * ctx.validation.global_loss
        arrays, metrics = self._krum(server_round, rlog, verified, useful)
        if self.verification is not None:
            self.verification.record(server_round, rlog.outcomes, gated)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return super().configure_evaluate(server_round + self.round_offset, arrays, config, grid)

    def _krum(self, server_round: int, rlog: RoundLog, verified: list[tuple[Message, Outcome]],
              useful: float | None = None) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's Multi-Krum over the verified replies, then the m best-ranked *useful* ones averaged with equal
        weights; None keeps the global model.

        A reply is useful when its validation score is above ``useful`` (min_gain × the global model's validation
        loss; None: the federation has no validation set, every verified reply is).
        Krum ranks every verified reply (its quorum counts them all), but a reply that does not lower the
        validation loss is never averaged in: near-centre attacks (IPM, colluders, free-riders) stay out even
        beyond Krum's bound. Equal weights: the node-reported ``num-examples`` is not signed, so it weighs nothing.
        """
        f, n, m = self.num_malicious_nodes, len(verified), self.num_nodes_to_select
        if f == 0 and 0 < n <= 2:  # too few for Krum's ranking, nothing to be robust against: average them all
            ranked = verified
            rlog.note = f"{n} verified replies: fewer than Krum ranks (f=0 needs 3); the useful ones are averaged"
        elif n <= 2 * f + 2 or n < m:
            rlog.kept_global = True
            rlog.note = (f"{n} verified replies: Krum with f={f} needs more than {2 * f + 2} "
                         f"(and at least m={m}); the global model is kept")
            log.warning("round %d: %s", server_round, rlog.note)
            for _, outcome in verified:
                outcome.status, outcome.reason = "NOT_SELECTED", "NO_QUORUM"
            return None, None
        else:
            order = select_multikrum([msg.content for msg, _ in verified], num_malicious_nodes=f,
                                     num_nodes_to_select=n)  # all of them, best Krum score first
            by_content = {id(msg.content): (msg, outcome) for msg, outcome in verified}
            ranked = [by_content[id(c)] for c in order]
            m = min(m, n)
        chosen = [(msg, o) for msg, o in ranked if useful is None or (o.score is not None and o.score > useful)][:m]
        for _, outcome in verified:
            outcome.status = "NOT_SELECTED"
        for _, outcome in chosen:
            outcome.status = "SELECTED"
        if not chosen:
            rlog.kept_global = True
            rlog.note = "no verified reply lowered the validation loss enough: the global model is kept"
            log.warning("round %d: %s", server_round, rlog.note)
            return None, None
        equal = [RecordDict({"arrays": msg.content["arrays"], "weight": MetricRecord({"weight": 1})})
                 for msg, _ in chosen]
        arrays = aggregate_arrayrecords(equal, "weight")
        metrics = self.train_metrics_aggr_fn([msg.content for msg, _ in chosen], self.weighted_by_key)
        return arrays, metrics
