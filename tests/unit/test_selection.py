"""Selection by usefulness (aggregator/protocol/selection.py) on the real strategy with toy updates: who is
averaged and paid follows the validation score, not closeness. Each test pins a way the Multi-Krum rule (the
default before, still ``selection = "multikrum"``) got it wrong: colluders who agree were selected over honest
nodes, copies from a second wallet were paid twice, an honest node with unusual data was dropped."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from test_strategy import TARGET, WIDE, DistanceValidation, reply, scored_round, toward

from aggregator.protocol.gate import STRUCTURAL_CHECKS, Gate
from aggregator.protocol.selection import NEAR, beyond_bound, copy_groups, gram, relative_distances, select
from aggregator.protocol.strategy import GatedMultiKrum
from aggregator.protocol.updates import half_error_bound
from prover.hashing import params_hash


def strategy(rule: str = "usefulness", f: int = 1, m: int = 3) -> GatedMultiKrum:
    return GatedMultiKrum(gate=Gate(list(STRUCTURAL_CHECKS)), hash_arrays=lambda a: params_hash(list(a.values())),
                          num_malicious_nodes=f, num_nodes_to_select=m, min_gain=0.01, selection=rule)


def shifted(base: OrderedDict, sigma: float, seed: int) -> OrderedDict:
    rng = np.random.default_rng(seed)
    return OrderedDict((k, (v + rng.normal(0, sigma, v.shape)).astype(np.float32)) for k, v in base.items())


def colluder(seed: int) -> OrderedDict:
    """θ_g plus a perturbation all colluders share (a little way toward the target: it scores above 0, about a
    fifth of an honest node's score, as measured on b87194b: +0.52 against +2.9 to +3.1), and a tiny part of its
    own (the proven rows differ per node): they agree with each other, not with anyone."""
    shared = np.random.default_rng(1234)
    base = OrderedDict((k, g + 0.04 * (TARGET[k] - g) + shared.normal(0, 0.004, g.shape)) for k, g in WIDE.items())
    return shifted(base, 1e-5, seed)


def loss(arrays) -> float:
    return DistanceValidation(TARGET, WIDE).loss(arrays)


def test_collude_three_of_seven_are_not_selected_over_honest_nodes():
    """Measured against b87194b: three agreeing colluders of seven were SELECTED (Krum ranks them first, distance
    ~0 between them) and the honest nodes NOT_SELECTED. Now every honest node counts, the colluders' group weighs by
    its (small) usefulness once, and each colluder is paid less than any honest node."""
    honest = {i: toward(i, noise=0.03) for i in range(1, 5)}  # non-IID: they spread more than colluders

    def replies():
        return [reply(i, u) for i, u in honest.items()] + [reply(90 + j, colluder(j)) for j in range(3)]

    _, before = scored_round(strategy("multikrum"), replies())
    assert all(before[90 + j].status == "SELECTED" for j in range(3))  # the old rule's failure, still selectable
    arrays, after = scored_round(strategy(), replies())
    assert 0.1 < max(after[90 + j].score for j in range(3)) / min(after[i].score for i in honest) < 0.3
    assert all(after[i].status == "SELECTED" for i in honest)
    colluders = [after[90 + j].weight for j in range(3)]
    assert max(colluders) < min(after[i].weight for i in honest)
    alone, _ = scored_round(strategy(), [reply(i, u) for i, u in honest.items()])
    assert loss(arrays) <= 1.05 * loss(alone)  # within 5 % of the honest nodes alone


def test_a_sybil_copy_from_a_second_wallet_is_rejected_duplicate():
    """The same update re-sent by another wallet passed the gate and was paid twice. The first to arrive keeps it;
    the copy is REJECTED, DUPLICATE (the registry refuses a second verified record of that hash too)."""
    honest = {i: toward(i, noise=0.005) for i in range(1, 5)}
    replies = [reply(i, u) for i, u in honest.items()] + [reply(99, honest[1])]
    arrays, out = scored_round(strategy(), replies)
    assert out[99].status == out[99].reason == "DUPLICATE" and out[99].weight == 0.0
    alone_arrays, alone = scored_round(strategy(), [reply(i, u) for i, u in honest.items()])
    assert out[1].weight == pytest.approx(alone[1].weight)
    np.testing.assert_array_equal(arrays["w"], alone_arrays["w"])


def test_sybil_near_copies_earn_together_what_the_original_would():
    """One update plus tiny noise from three more wallets (no hash matches): the four are one piece of work. The
    first to arrive carries its weight, as much as it has alone (within 10 %); the later ones are DUPLICATE,
    weightless, so the copier's wallets together earn nothing beside it; the average is the honest nodes' alone."""
    honest = {i: toward(i, noise=0.005) for i in range(1, 5)}
    copies = {90 + j: shifted(honest[1], 1e-5, j) for j in range(3)}
    replies = [reply(i, u) for i, u in {**honest, **copies}.items()]
    arrays, out = scored_round(strategy(), replies)
    alone_arrays, alone = scored_round(strategy(), [reply(i, u) for i, u in honest.items()])
    assert out[1].weight == pytest.approx(alone[1].weight, rel=0.10)
    for j in copies:
        assert (out[j].status, out[j].weight) == ("DUPLICATE", 0.0) and "near-copy" in out[j].detail
    assert loss(arrays) == pytest.approx(loss(alone_arrays), rel=0.01)


def test_selection_averages_in_an_unusual_honest_reply_that_helps():
    """Four honest nodes, one with data unlike the others (its half of the target is the half they never see):
    Multi-Krum m = 3 drops it, the farthest, while it is useful. Usefulness keeps it, and the model learns more."""
    rng = np.random.default_rng(7)
    half = OrderedDict((k, (np.arange(v.size).reshape(v.shape) % 2).astype(np.float32)) for k, v in WIDE.items())

    def learns(part: dict, seed: int) -> OrderedDict:
        return OrderedDict((k, (g + 0.9 * part[k] * (TARGET[k] - g) + rng.normal(0, 0.003, g.shape))
                            .astype(np.float32)) for k, g in WIDE.items())

    other = {k: 1 - v for k, v in half.items()}
    updates = {1: learns(other, 1), 2: learns(other, 2), 3: learns(other, 3), 4: learns(half, 4)}
    old_arrays, before = scored_round(strategy("multikrum", f=0), [reply(i, u) for i, u in updates.items()])
    assert before[4].status == "NOT_SELECTED" and before[4].score > 0
    arrays, after = scored_round(strategy(f=0), [reply(i, u) for i, u in updates.items()])
    assert all(o.status == "SELECTED" for o in after.values())
    assert loss(arrays) < 0.8 * loss(old_arrays)


def test_selection_rules_pure():
    """The pieces: relative distances from a Gram matrix, near-copy groups closed transitively, the norm bound
    on the median, and a mean that is not useful falling back to the best group alone."""
    points = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, 1.0 + 0.9 * NEAR], [10.0, 10.0]])
    rel = relative_distances(gram(points))
    assert rel[0, 1] < NEAR and rel[0, 2] > 1
    assert copy_groups(rel) == [[0, 1], [2, 3], [4]]
    assert beyond_bound(np.linalg.norm(points, axis=1)) == [4]
    calls = []

    def mean_hurts(weights):
        calls.append(weights)
        return -1.0

    sel = select([0.5, 0.5, 0.2, 0.2, 3.0], gram(points), 0.1, mean_hurts)
    assert sel.far == [4] and len(calls) == 1  # the far reply scores best, yet stays out
    assert sel.mode == "best" and sel.chosen == [0] and sel.weights[0] == 1.0 and sel.copies == [1, 3]
    sel = select([0.5, 0.5, 0.2, 0.2, 3.0], gram(points), 0.1, lambda w: 0.4)
    assert sel.mode == "useful" and sel.weights.sum() == pytest.approx(1.0) and sel.chosen == [0, 2]
    assert sel.weights[0] == pytest.approx(0.4 / 0.5)  # (0.5 − 0.1) : (0.2 − 0.1), a group's to its first reply
    # One reply barely useful alone, three that are not: one node's overfit update taken alone made the learn
    # federation of docs/fed-vs-central.md worse (round 4: eval loss 0.438 → 0.504); the equal mean of all is
    # scored instead and taken when it beats both the minimum gain and that reply.
    spread = np.eye(4)
    sel = select([0.05, -0.01, -0.1, -0.2], gram(spread), 0.04, lambda w: 0.3)
    assert sel.mode == "together" and sel.weights.tolist() == [0.25] * 4
    sel = select([0.05, -0.01, -0.1, -0.2], gram(spread), 0.04, lambda w: 0.045)  # worse than the one: it alone
    assert sel.mode == "useful" and sel.chosen == [0] and sel.mean_score == 0.045


def test_a_sketched_round_selects_by_usefulness_as_the_exact_one(tmp_path):
    """Above the exact bound the updates are spilled (as float16 steps) and their distances come from the count
    sketches: the same groups (the near-copies found), the same weights, and the exact round's weighted mean within
    the float16 steps' bound."""
    honest = {i: toward(i, noise=0.005) for i in range(1, 5)}
    updates = {**honest, **{90 + j: shifted(honest[2], 1e-5, j) for j in range(2)}}

    def replies():
        return [reply(i, u) for i, u in updates.items()]

    exact_arrays, exact = scored_round(strategy(), replies())
    sketched = strategy()
    sketched.exact_max_values, sketched.spill_dir = 0, str(tmp_path)
    arrays, out = scored_round(sketched, replies())
    assert sketched.rounds[1].krum.startswith("sketch-")
    assert {i: o.status for i, o in out.items()} == {i: o.status for i, o in exact.items()}
    assert [o.weight for o in out.values()] == pytest.approx([o.weight for o in exact.values()])
    weights = {i: o.weight for i, o in out.items() if o.weight > 0}
    bound = half_error_bound([updates[i]["w"] - WIDE["w"] for i in weights], list(weights.values()))
    assert np.all(np.abs(arrays["w"] - exact_arrays["w"]) <= bound + 2 * np.spacing(exact_arrays["w"]))
    assert not list(tmp_path.iterdir())  # the spilled updates are gone after the round
