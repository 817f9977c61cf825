"""The round's aggregation over verified replies only: Flower's MultiKrum, with the gate in front of it.

Flower's ``MultiKrum.aggregate_train`` raises for the whole round if one reply is malformed and does not say which
replies it selected. This subclass gates every reply first (as it arrives, in parallel: ``aggregator.protocol.intake``),
refuses a second copy of one piece of work (DUPLICATE), then decides who is averaged and with what weight: by
measured usefulness (``aggregator.protocol.selection``, the default with a validation set) or Krum's ranking (without
one, or ``selection = "multikrum"``), and keeps each reply's outcome and weight for the round's records.

Two ways to rank, one rule (Flower's ``select_multikrum``): while n·d is at most ``exact_max_values`` the replies
stay in memory and Flower's own Multi-Krum ranks them on the full vectors; above it each verified update is
reduced to a count sketch as it arrives and spilled to disk, Krum ranks the sketches, and the chosen updates are
read back one at a time into one sum (``aggregator.protocol.sketch``, ``aggregator.protocol.updates``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import MultiKrum
from flwr.serverapp.strategy.multikrum import select_multikrum

from aggregator.protocol.gate import VERIFIED, Gate, Outcome, RoundContext
from aggregator.protocol.intake import Gated, RoundIntake
from aggregator.protocol.selection import NEAR, NORM_BOUND, select
from aggregator.protocol.server_optimizer import ServerOptimizer, ServerState, server_step
from aggregator.protocol.sketch import EXACT_MAX_VALUES, SKETCH_DIM, CountSketch, krum_order, round_seed, use_sketch
from aggregator.protocol.updates import UpdateStore
from node.drift import MEAN_UPDATE, MEAN_UPDATE_ROUND, drift_shift, update_of
from node.params import pack, unpack

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
    krum: str = "exact"  # "exact" (full vectors) or "sketch-<dim>" (count sketches of the updates)
    sketch_seed: int | None = None  # the round's sketch seed, published once the replies are in
    timings: dict = field(default_factory=dict)  # seconds: gate (sum over replies), after-last-reply, selection, ...
    selection: str = ""  # how the new model was made: "useful", "best", "together", "multikrum" ("" if kept)
    mean_score: float | None = None  # the validation score of the averaged update, when it was scored
    closest_pair: float | None = None  # the smallest relative distance between two verified updates not grouped


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """The new global model as Flower's loop carries it (``node.params.pack``'s one vector; its layout is the
    strategy's, unchanged), each array let go as soon as it is written: held once, not twice over."""
    return pack(arrays, release=True)["arrays"]


class GatedMultiKrum(MultiKrum):
    """MultiKrum (Krum when ``num_nodes_to_select == 1``) over the replies that pass ``gate``.

    ``layout``: the model's ``"layout"`` record (``node.params.pack``). Flower's loop hands the strategy the model's
    ArrayRecord alone; the strategy reads it with this layout and sends the layout beside it in every message."""

    def __init__(self, gate: Gate, hash_arrays: Callable[[dict], str], verification=None, validator=None,
                 harm_tolerance: float = 0.0, rise_tolerance: float = 0.0, min_gain: float = 0.0,
                 selection: str = "usefulness", gate_workers: int = 2, sketch_dim: int = SKETCH_DIM,
                 exact_max_values: int = EXACT_MAX_VALUES,
                 spill_dir: str | None = None, layout: ConfigRecord | None = None,
                 server_optimizer: ServerOptimizer | None = None,
                 learning_rate_at: Callable[[int], float] | None = None, drift_correction: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # The nodes correct their steps for drift (node/drift.py): each train message then carries the last
        # round's averaged update Δ (the selected mean − θ_g, before the server's step), when that round took one.
        # A node's correction is the federation's direction, not its work: its validation score is taken without
        # it (RoundContext.correction_of), from the mean update and the node's verified update of the last round.
        self.drift_correction = drift_correction
        self.last_mean_update: tuple[int, ArrayRecord] | None = None
        self.last_updates: dict[int, dict[str, np.ndarray]] = {}  # node id → its verified update Δ_i, last round
        self.learning_rate_at = learning_rate_at  # the round's learning rate for the nodes (a schedule), or None
        # The server's step along the round's mean (aggregator.protocol.server_optimizer), its state across rounds
        self.server_optimizer = server_optimizer or ServerOptimizer()
        self.server_state = ServerState()
        self.gate = gate
        self.layout = layout
        self.hash_arrays = hash_arrays
        self.verification = verification  # aggregator.protocol.verification.Verification, or None: no proofs, no chain
        self.validator = validator  # aggregator.protocol.validation.Validator, or None: no validation score
        self.harm_tolerance, self.rise_tolerance = harm_tolerance, rise_tolerance
        self.min_gain = min_gain  # a reply is averaged in only if its score is above min_gain × L_val(θ_g)
        self.selection = selection  # "usefulness" (with a validation set) or "multikrum"
        self.rounds: dict[int, RoundLog] = {}
        self._context: dict[int, RoundContext] = {}
        self._sent: dict[int, list[Message]] = {}
        self.round_offset = 0  # rounds done before this process started (a resumed run): Flower counts from 1
        # Scale (protocol.intake, protocol.sketch): replies gated as they arrive, Krum on sketches when large.
        self.gate_workers = gate_workers  # replies gated at once (threads: a proof check runs in EZKL or a service)
        self.sketch_dim, self.exact_max_values = sketch_dim, exact_max_values
        self.spill_dir = spill_dir or tempfile.gettempdir()  # where a sketched round keeps its verified updates
        self._salt = os.urandom(32)  # sketch seeds: unknown to the nodes until each round's seed is published
        self._intakes: dict[int, RoundIntake] = {}
        self._open_round: int | None = None
        self.notices = None  # aggregator.protocol.notices.OutcomeNotices: each node's earlier outcomes, told

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Open the round: hash the global model, put the hash in the config every node receives."""
        server_round += self.round_offset
        global_arrays = unpack(arrays, self.layout)  # views on Flower's record: no copy
        global_hash = self.hash_arrays(global_arrays)
        config = ConfigRecord(dict(config))
        config["global-hash"] = global_hash
        if self.learning_rate_at is not None:
            config["learning-rate"] = float(self.learning_rate_at(server_round))
        mean_update = None
        if self.drift_correction and self.last_mean_update is not None and self.last_mean_update[0] == server_round - 1:
            config[MEAN_UPDATE_ROUND], mean_update = self.last_mean_update
        if self.verification is not None:
            ctx = self.verification.open(server_round, global_arrays, global_hash, config)
        else:
            ctx = RoundContext(server_round, global_arrays, global_hash)
        ctx.harm_tolerance, ctx.rise_tolerance = self.harm_tolerance, self.rise_tolerance
        if mean_update is not None:
            ctx.correction_of = self._corrections(mean_update, self.last_updates)
        self.rounds[server_round] = RoundLog(server_round, global_hash)
        if self.validator is not None:
            ctx.validation = self.validator.open(server_round, global_arrays)
            self.rounds[server_round].validation_loss = ctx.validation.global_loss
        self._context[server_round] = ctx
        messages = self._with_layout(super().configure_train(server_round, arrays, config, grid))
        if mean_update is not None:
            for message in messages:
                message.content[MEAN_UPDATE] = mean_update
        if self.notices is not None:  # each node's outcome of its last reply, in its own message
            self.notices.attach(messages)
        self._sent[server_round] = messages  # Flower stamps their message ids when it pushes them
        self._open_round = server_round
        return messages

    def admit(self, message: Message) -> None:
        """A train reply of the open round has arrived (``aggregator.protocol.intake.ArrivalGrid``): start gating it."""
        if self._open_round is not None and self._open_round in self._context:
            self._intake(self._open_round).submit(message)

    def pull_batch(self) -> int | None:
        """Replies to pull at once: all (None) for small rounds; when updates are spilled, as many as the gate has
        room for, once it has room (waits until then): a pulled real-size reply is 400 MB."""
        if self._open_round is None or self._open_round not in self._context:
            return None
        return self._intake(self._open_round).wait_for_room()

    def _intake(self, server_round: int, n_replies: int = 0) -> RoundIntake:
        """The round's intake, made at its first reply: exact Krum in memory, or sketches and a spill folder."""
        if server_round not in self._intakes:
            ctx, rlog = self._context[server_round], self.rounds[server_round]
            sent = self._sent.get(server_round, [])
            size = sum(int(np.size(a)) for a in ctx.global_arrays.values())
            sketch = None
            if use_sketch(max(len(sent), n_replies), size, self.exact_max_values):
                rlog.sketch_seed = round_seed(self._salt, server_round, ctx.global_hash)
                rlog.krum = f"sketch-{self.sketch_dim}"
                sketch = CountSketch(self.sketch_dim, rlog.sketch_seed, size)
            store = UpdateStore(ctx.global_arrays, self.spill_dir if sketch is not None else None)
            self._intakes[server_round] = RoundIntake(self.gate, ctx, sent, store, sketch, self.gate_workers)
        return self._intakes[server_round]

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Gate every reply, then Krum over the verified ones; keep the global model without a quorum."""
        server_round += self.round_offset
        replies = list(replies)
        intake = self._intake(server_round, len(replies))
        ctx, rlog = self._context.pop(server_round), self.rounds[server_round]
        try:
            gated = intake.collect(replies)
            global_sketch = None
            if intake.sketch is not None:
                global_sketch = intake.sketch(ctx.global_arrays.values())  # updates are sketch(θ_n) − this
                intake.sketch.release()  # every update is sketched: the aggregation needs the memory more
            if intake.last_arrival is not None and gated:
                rlog.timings["gate_after_last_reply"] = max(g.done_at for g in gated) - intake.last_arrival
            rlog.timings["gate"] = sum(g.gate_seconds for g in gated)
            rlog.timings["sketch"] = sum(g.sketch_seconds for g in gated)
            rlog.timings["store"] = sum(g.store_seconds for g in gated)
            rlog.outcomes = [g.outcome for g in gated]
            for g in gated:
                if g.outcome.status == VERIFIED and g.outcome.approval_unchecked:  # an outage: no verdict, not averaged
                    g.outcome.status = "NOT_SELECTED"
                    g.outcome.detail = "approval not checked (chain unavailable): held out; the registry judges it"
            verified = drop_duplicates([g for g in gated if g.outcome.status == VERIFIED])
            sent = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent.pop(server_round, [])}
            rlog.no_reply = sorted(set(sent.values()) - {g.outcome.node_id for g in gated})
            if rlog.no_reply:  # a node that hung: Flower waited for it until the round's timeout
                log.warning("round %d: no reply within the round's timeout from node(s) %s", server_round,
                            ", ".join(map(str, rlog.no_reply)))
            useful = None if ctx.validation is None else self.min_gain * ctx.validation.global_loss
            caught = sum(g.outcome.status not in (VERIFIED, "NOT_SELECTED") for g in gated)
            if ctx.validation is not None and self.selection == "usefulness":
                arrays, metrics = self._by_usefulness(server_round, rlog, verified, intake, ctx, global_sketch)
            else:
                arrays, metrics = self._krum(server_round, rlog, verified, intake, useful, ctx.validation, caught)
            if self.drift_correction:  # each node's update, for the next round's corrections (n models held)
                self.last_updates = {g.outcome.node_id: update_of(intake.store.get(g.key), ctx.global_arrays)
                                     for g in verified}
        finally:
            intake.store.close()
            self._intakes.pop(server_round, None)
            if self._open_round == server_round:
                self._open_round = None
        self.last_mean_update = None
        if arrays is not None and self.drift_correction:
            mean = unpack(arrays, self.layout)
            self.last_mean_update = (server_round, to_record(update_of(mean, ctx.global_arrays)))
        if arrays is not None and self.server_optimizer.kind != "none":
            arrays = self._server_step(ctx, arrays, rlog)
        if self.verification is not None:
            self.verification.record(server_round, rlog.outcomes, {g.outcome.node_id: g.reply for g in gated})
        return arrays, metrics

    def _corrections(self, mean_update: ArrayRecord,
                     last_updates: dict[int, dict[str, np.ndarray]]) -> Callable[[int], dict | None]:
        """Δ − Δ_i for each node: what its drift correction (node/drift.py) added to its update this round, from
        the mean update sent with the round and the node's verified update of the last one; None for a node
        without one (its correction, if any, is then scored as its own work)."""
        mean = unpack(mean_update, self.layout)

        def correction_of(node_id: int) -> dict[str, np.ndarray] | None:
            own = last_updates.get(node_id)
            return None if own is None else drift_shift(mean, own)

        return correction_of

    def _server_step(self, ctx: RoundContext, mean: ArrayRecord, rlog: RoundLog) -> ArrayRecord:
        """The new global model: the server optimizer's step from θ_g along the selected mean (a round that kept
        θ_g takes none)."""
        new, self.server_state = server_step(ctx.global_arrays, unpack(mean, self.layout), self.server_state,
                                             self.server_optimizer)
        rlog.note = (rlog.note + "; " if rlog.note else "") + (
            f"server step {self.server_state.steps} ({self.server_optimizer.kind}, lr {self.server_optimizer.lr:g})")
        return to_record(new)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self._with_layout(super().configure_evaluate(server_round + self.round_offset, arrays, config, grid))

    def _with_layout(self, messages: Iterable[Message]) -> list[Message]:
        """The model's layout beside its arrays in each message (Flower gives a round's messages one content)."""
        messages = list(messages)
        for message in messages:
            message.content["layout"] = self.layout
        return messages

    def _krum(self, server_round: int, rlog: RoundLog, verified: list[Gated], intake: RoundIntake,
              useful: float | None = None, validation=None,
              caught: int = 0) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Multi-Krum over the verified replies, then the m best-ranked *useful* ones averaged with equal weights;
        None keeps the global model.

        A reply is useful when its validation score is above ``useful`` (min_gain × the global model's validation
        loss; None: the federation has no validation set, every verified reply is).
        Krum ranks every verified reply (its quorum counts them all), but a reply that does not lower the
        validation loss is never averaged in: near-centre attacks (IPM, colluders, free-riders) stay out even
        beyond Krum's bound. One exception, so that non-IID honest nodes are not wasted: when no reply is useful
        alone, the mean of the m best-ranked is scored (``validation``) and averaged in if it is useful itself.
        Equal weights: the node-reported ``num-examples`` is not signed, so it weighs nothing.

        ``caught``: replies the gate rejected this round. Of the f Byzantine nodes Krum is sized for, those are out
        already, so Krum ranks the rest for f − caught: else one caught attacker leaves n = 2f + 2 honest replies,
        short of Krum's quorum, and its rejection alone would stop the federation (measured: the sign-flipper
        of docs/fed-vs-central.md, HARMFUL every round, kept the global model 8 rounds of 8). The price: an
        honest reply the gate rejects (HARMFUL under DP noise, say) also lowers the f Krum guards against.
        """
        f, n, m = max(0, self.num_malicious_nodes - caught), len(verified), self.num_nodes_to_select
        if f == 0 and 0 < n <= 2:  # too few for Krum's ranking, nothing to be robust against: average them all
            ranked = verified
            rlog.note = f"{n} verified replies: fewer than Krum ranks (f=0 needs 3); the useful ones are averaged"
        elif n <= 2 * f + 2 or n < m:
            rlog.kept_global = True
            rlog.note = (f"{n} verified replies: Krum with f={f} needs more than {2 * f + 2} "
                         f"(and at least m={m}); the global model is kept")
            log.warning("round %d: %s", server_round, rlog.note)
            for g in verified:
                g.outcome.status, g.outcome.reason = "NOT_SELECTED", "NO_QUORUM"
            return None, None
        else:
            t0 = time.perf_counter()
            ranked = self._rank(verified, intake)
            rlog.timings["selection"] = time.perf_counter() - t0
            m = min(m, n)
        chosen = [g for g in ranked if useful is None or (g.outcome.score is not None and g.outcome.score > useful)]
        chosen, mean, why = chosen[:m], None, "no verified reply lowered the validation loss enough"
        if not chosen and validation is not None and min(m, len(ranked)) > 1:
            chosen, mean, why = self._useful_together(ranked[:m], intake, validation, useful, rlog)
            if chosen:
                rlog.note = f"{why}: averaged"
                log.info("round %d: %s", server_round, rlog.note)
        for g in verified:
            g.outcome.status = "NOT_SELECTED"
        for g in chosen:
            g.outcome.status, g.outcome.weight = "SELECTED", 1.0 / len(chosen)
        rlog.selection = "multikrum"
        if not chosen:
            rlog.kept_global, rlog.note = True, f"{why}: the global model is kept"
            log.warning("round %d: %s", server_round, rlog.note)
            return None, None
        t0 = time.perf_counter()
        arrays = to_record(mean if mean is not None else intake.store.mean(g.key for g in chosen))
        rlog.timings["aggregation"] = time.perf_counter() - t0
        metrics = self.train_metrics_aggr_fn([g.message.content for g in chosen], self.weighted_by_key)
        return arrays, metrics

    def _by_usefulness(self, server_round: int, rlog: RoundLog, verified: list[Gated], intake: RoundIntake,
                       ctx: RoundContext, global_sketch: np.ndarray | None) -> tuple[ArrayRecord | None,
                                                                                    MetricRecord | None]:
        """Every useful verified reply averaged in, weighted by its score above the minimum gain
        (``aggregator.protocol.selection``); None keeps the global model. Distances come from the full updates
        or, in a sketched round, from their sketches."""
        validation = ctx.validation
        floor = self.min_gain * validation.global_loss
        for g in verified:
            g.outcome.status, g.outcome.weight = "NOT_SELECTED", 0.0
        if not verified:
            rlog.kept_global, rlog.note = True, "no verified reply: the global model is kept"
            return None, None
        keys = [g.key for g in verified]
        t0 = time.perf_counter()
        if global_sketch is not None:
            steps = np.stack([g.sketch for g in verified]) - global_sketch
            gram = steps @ steps.T
        else:
            gram = intake.store.gram(keys, ctx.global_arrays)
        scored: dict = {}

        def score_mean(weights: np.ndarray) -> float:
            t1 = time.perf_counter()
            used = [i for i in range(len(keys)) if weights[i] > 0]
            scored["weights"], scored["mean"] = weights, intake.store.mean([keys[i] for i in used], weights[used])
            score = validation.score(scored["mean"])
            rlog.timings["validation_of_mean"] = time.perf_counter() - t1
            return score

        sel = select([g.outcome.score for g in verified], gram, floor, score_mean)
        rlog.timings["selection"] = time.perf_counter() - t0 - rlog.timings.get("validation_of_mean", 0.0)
        rlog.selection, rlog.mean_score, rlog.closest_pair = sel.mode, sel.mean_score, sel.closest
        for i in sel.far:
            verified[i].outcome.detail = f"update norm above {NORM_BOUND:g}× the round's median: left out"
        for group in sel.groups:
            for i in group[1:]:  # the first reply of a group of near-copies carries its weight; the rest are copies
                first = verified[group[0]].outcome
                verified[i].outcome.status = verified[i].outcome.reason = "DUPLICATE"
                verified[i].outcome.detail = (f"a near-copy (within {NEAR:.0%}) of {first.address}'s update, "
                                              "which arrived first")
        chosen = sel.chosen
        for i in chosen:
            verified[i].outcome.status, verified[i].outcome.weight = "SELECTED", float(sel.weights[i])
        if not chosen:
            rlog.kept_global = True
            rlog.note = (f"no verified reply lowered the validation loss by min-gain ({floor:.4f})"
                         + (f", nor did their mean ({sel.mean_score:+.4f})" if sel.mean_score is not None else "")
                         + ": the global model is kept")
            log.warning("round %d: %s", server_round, rlog.note)
            return None, None
        if sel.mode == "best":
            rlog.note = (f"the weighted mean scored {sel.mean_score:+.4f}, not above min-gain ({floor:.4f}): the "
                         "best reply alone is averaged in")
        elif sel.mode == "together":
            rlog.note = (f"no verified reply lowered the validation loss by min-gain ({floor:.4f}) alone; their "
                         f"mean scored {sel.mean_score:+.4f}: averaged with equal weights")
        if rlog.note:
            log.info("round %d: %s", server_round, rlog.note)
        t0 = time.perf_counter()
        if "weights" in scored and np.array_equal(scored["weights"], sel.weights):
            arrays = to_record(scored.pop("mean"))
        else:
            arrays = to_record(intake.store.mean([keys[i] for i in chosen], sel.weights[chosen]))
        rlog.timings["aggregation"] = time.perf_counter() - t0
        metrics = self.train_metrics_aggr_fn([verified[i].message.content for i in chosen], self.weighted_by_key)
        return arrays, metrics

    @staticmethod
    def _useful_together(candidates: list[Gated], intake: RoundIntake, validation, useful: float,
                         rlog: RoundLog) -> tuple[list[Gated], dict | None, str]:
        """Non-IID honest nodes: each update alone may miss min_gain on the validation set (each fits its own
        data) while their mean does not (what is particular to each averages out). So when no reply is useful
        alone, the mean of Krum's best-ranked replies is scored once and averaged in only if it is useful itself;
        each of them already passed the HARMFUL check (s >= -tau). Returns the chosen replies, their mean and why."""
        t0 = time.perf_counter()
        mean = intake.store.mean(g.key for g in candidates)
        together = validation.score(mean)
        rlog.timings["validation_of_mean"] = time.perf_counter() - t0
        why = (f"no verified reply lowered the validation loss by min-gain ({useful:.4f}) alone; the mean of Krum's "
               f"{len(candidates)} best-ranked scored {together:+.4f}")
        return (candidates, mean, why) if together > useful else ([], None, why)

    def _rank(self, verified: list[Gated], intake: RoundIntake) -> list[Gated]:
        """Every verified reply, best Krum score first: on the sketches when the round has them, else Flower's own
        ``select_multikrum`` on the full vectors."""
        f = self.num_malicious_nodes
        if intake.sketch is not None:
            return [verified[i] for i in krum_order(np.stack([g.sketch for g in verified]), f)]
        order = select_multikrum([g.message.content for g in verified], num_malicious_nodes=f,
                                 num_nodes_to_select=len(verified))
        by_content = {id(g.message.content): g for g in verified}
        return [by_content[id(c)] for c in order]


def drop_duplicates(verified: list[Gated]) -> list[Gated]:
    """One piece of work, one record that can be paid: a verified reply with the update hash or proof hash of an
    earlier reply of the round (another wallet re-sending it) is rejected DUPLICATE; the first to arrive keeps it
    (the registry refuses a second such record too). Returns the rest, in arrival order."""
    seen: dict[str, Gated] = {}
    kept = []
    for g in sorted(verified, key=lambda g: g.key):
        hashes = {"update": g.reply.update_hash, "proof": g.reply.proof_hash}  # None: an unverified federation
        first = next(((what, seen[h]) for what, h in hashes.items() if h in seen), None)
        if first is not None:
            g.outcome.status = g.outcome.reason = "DUPLICATE"
            g.outcome.detail = f"the same {first[0]} as {first[1].outcome.address}'s reply, which arrived first"
            continue
        seen.update({h: g for h in hashes.values() if h is not None})
        kept.append(g)
    return kept
