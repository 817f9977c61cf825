"""Who is averaged, with what weight: measured usefulness, not closeness.

Krum ranks replies by how close they sit to each other, and when that ranking alone decided who was averaged and
paid, colluders who agreed won and honest nodes with unusual data lost (docs/security.md, "Selection"). Here every
verified reply that is useful on the aggregator's validation set counts, weighed by how useful it is, and agreeing
with other replies earns nothing:

1. **Bound**: an update more than ``norm_bound`` × the median update norm of the round is left out (``FAR``): no
   single reply may dominate the average, however well it scores (the bound of norm-clipping defences; a minority
   cannot move the median).
2. **One piece of work, one share**: updates within ``near`` (relative distance) of each other are one group; a
   group counts once, and its weight goes to its first reply to arrive (copying takes time: the copy comes after
   the work); the later ones are copies (``DUPLICATE``, as bit-identical copies already are), so k wallets sending
   near-copies of one update earn together no more than the one piece of work would.
3. **Weights follow usefulness**: a group's weight is its score above the round's minimum gain, (s − g)⁺, over the
   sum of those of every useful group; a reply that is not useful alone weighs nothing.
4. **The mean is checked**: the weighted mean is scored once on the validation set (the round's one extra pass)
   and must be useful itself; if not, the best group alone is. When at most one reply is useful alone, the
   equal-weight mean of every verified reply within the bound is scored instead (non-IID honest nodes: what is
   particular to each averages out) and taken if it beats the minimum gain and that one reply.

Pure functions of the round's numbers: the strategy (``aggregator.protocol.strategy``) feeds them distances from
the full updates or from their sketches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NEAR = 0.05  # relative distance under which two updates are one piece of work (docs/security.md: honest pairs ≥ …)
NORM_BOUND = 4.0  # an update longer than this × the round's median update norm is left out


@dataclass
class Selection:
    """The verdict on a round's verified replies (indices into the round's list)."""

    weights: np.ndarray  # each reply's weight in the new global model (sum 1), 0 when not averaged in
    far: list[int] = field(default_factory=list)  # left out by the norm bound
    groups: list[list[int]] = field(default_factory=list)  # near-copies, each a list of indices (first: earliest)

    @property
    def copies(self) -> list[int]:
        """Replies that are near-copies of an earlier one: not averaged in, not paid."""
        return sorted(i for group in self.groups for i in group[1:])
    mode: str = ""  # "useful" (weighted), "best" (the best group alone), "together" (equal weights), "none"
    mean_score: float | None = None  # the validation score of the weighted mean, when it was scored
    closest: float | None = None  # the smallest relative distance between two groups (how near honest work comes)

    @property
    def chosen(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.weights > 0)]


def gram(points: np.ndarray) -> np.ndarray:
    """The Gram matrix (inner products) of the rows of ``points``: all ``select`` needs of the updates."""
    points = np.asarray(points, np.float64)
    return points @ points.T


def relative_distances(gram: np.ndarray) -> np.ndarray:
    """‖Δi − Δj‖ / max(‖Δi‖, ‖Δj‖) from the Gram matrix of the updates Δ = θ_n − θ_g (or of their sketches)."""
    sq = np.diag(gram)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0))
    norms = np.sqrt(np.maximum(sq, 0.0))
    scale = np.maximum(norms[:, None], norms[None, :])
    rel = np.divide(dist, scale, out=np.zeros_like(dist), where=scale > 0)
    np.fill_diagonal(rel, 0.0)
    return rel


def copy_groups(rel: np.ndarray, near: float = NEAR) -> list[list[int]]:
    """Replies whose updates are within ``near`` of each other, closed transitively (a chain of near-copies is
    one group); groups and members in the replies' order."""
    n = len(rel)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.argwhere(np.triu(rel < near, 1)):  # only the near pairs: no Python loop over all n² of them
        parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def beyond_bound(norms: np.ndarray, bound: float = NORM_BOUND) -> list[int]:
    """Replies whose update norm is above ``bound`` × the median norm (none with fewer than 3 replies: no
    median a minority cannot move)."""
    norms = np.asarray(norms, np.float64)
    if len(norms) < 3:
        return []
    return [int(i) for i in np.flatnonzero(norms > bound * np.median(norms))]


def group_weights(groups: list[list[int]], values: np.ndarray, n: int) -> np.ndarray:
    """Each group's share of ``values`` (one value per group, ≥ 0), all of it to the group's first reply."""
    weights = np.zeros(n)
    total = float(np.sum(values))
    if total <= 0:
        return weights
    for group, value in zip(groups, values, strict=True):
        weights[group[0]] = value / total
    return weights


def select(scores: list[float], gram: np.ndarray, min_gain: float, score_mean: Callable[[np.ndarray], float],
           near: float = NEAR, bound: float = NORM_BOUND) -> Selection:
    """The round's weights over its verified replies (in arrival order).

    ``scores``: each reply's validation score s; ``gram``: the Gram matrix of their updates Δ (or of sketches of
    them); ``min_gain``: g, the score a reply must beat to be useful; ``score_mean(weights)``: the validation score
    of the weighted mean of the updates (called at most once)."""
    n = len(scores)
    s = np.asarray(scores, np.float64)
    gram = np.asarray(gram, np.float64)
    far = beyond_bound(np.sqrt(np.maximum(np.diag(gram), 0.0)), bound)
    inside = [i for i in range(n) if i not in far]
    rel = relative_distances(gram[np.ix_(inside, inside)])
    local = copy_groups(rel, near)  # positions among ``inside``
    groups = [[inside[j] for j in group] for group in local]
    leaders = [group[0] for group in local]
    apart = np.where(np.eye(len(leaders), dtype=bool), np.inf, rel[np.ix_(leaders, leaders)])
    closest = float(apart.min()) if len(leaders) > 1 else None
    gains = np.array([max(float(s[g[0]]) - min_gain, 0.0) for g in groups])  # the work of its first reply
    useful = [g for g, gain in zip(groups, gains, strict=True) if gain > 0]
    best = groups[int(np.argmax(gains))] if useful else None
    if len(useful) >= 2:
        weights = group_weights(useful, gains[gains > 0], n)
        mean_score = score_mean(weights)
        if mean_score > min_gain:
            return Selection(weights, far, groups, "useful", mean_score, closest)
        return Selection(group_weights([best], np.ones(1), n), far, groups, "best", mean_score, closest)
    if len(groups) > 1:  # at most one useful alone: the equal-weight mean of all may beat it (non-IID nodes)
        together = group_weights(groups, np.ones(len(groups)), n)
        mean_score = score_mean(together)
        if mean_score > max(min_gain, float(s[best[0]]) if best else min_gain):
            return Selection(together, far, groups, "together", mean_score, closest)
        if best:
            return Selection(group_weights([best], np.ones(1), n), far, groups, "useful", mean_score, closest)
        return Selection(np.zeros(n), far, groups, "none", mean_score, closest)
    if best:  # one piece of work: its score is the mean's
        return Selection(group_weights([best], np.ones(1), n), far, groups, "useful", None, closest)
    return Selection(np.zeros(n), far, groups, "none", None, closest)
