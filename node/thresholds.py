"""The gate's thresholds for each model spec, measured from honest runs of that spec (docs/benchmarks.md).

A validation score's scale is the model's loss: the same τ cannot serve ``tiny`` (flow-matching losses near 0.8) and
``learn`` (near 2 at the start, a trained vision encoder that moves more per round). So each spec the federation
offers carries the thresholds its honest runs support, and a run takes them unless the operator sets its own:

- τ (``harm_tolerance``): a score below −τ is ``HARMFUL``; above the most negative honest score measured, with room.
- ρ (``rise_tolerance``): a proven loss may rise by this fraction before ``NO_IMPROVEMENT``.
- min-gain (``min_gain``): a reply counts as useful above min_gain × L_val(θ_g).

Kept apart from ``node.model`` (which imports torch) so that reading a run's settings stays light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateThresholds:
    harm_tolerance: float = 0.1
    rise_tolerance: float = 0.25
    min_gain: float = 0.01


SPEC_THRESHOLDS: dict[str, GateThresholds] = {
    # 233 honest replies (eval_validation and the attack runs, synthetic and sim, Multi-Krum): scores ≥ −0.0725,
    # proven loss rises ≤ +3.5 % (docs/benchmarks.md, "Validation"); under selection by usefulness the global model
    # moves further each round and an honest reply scored −0.127 (eval_attacks --plan selection, 7 nodes, round 3)
    "tiny": GateThresholds(harm_tolerance=0.2, rise_tolerance=0.25, min_gain=0.01),
    # the demo's learn/reach runs: an honest reply scored −0.193 in round 3 (τ = 0.1 rejected it HARMFUL); the honest
    # federation of docs/fed-vs-central.md (300 local steps a round, the vision encoder training too): an honest
    # reply scored −0.558 and proven losses rose by +41 % and +44 % (round 3), so τ and ρ are about twice those
    "learn": GateThresholds(harm_tolerance=1.0, rise_tolerance=1.0, min_gain=0.01),
}
"""Specs not listed (``full-random``, ``hf:``/``local:`` checkpoints) take the defaults until measured."""


DRIFT_RISE_TOLERANCE = 2.5
"""ρ with the nodes' drift correction (node/drift.py), unless the operator sets one: a corrected update moves a node
towards the federation and away from its own data, so its proven loss may rise further. In the measured `learn`
run (docs/fed-vs-central.md, "Where it stands") honest proven losses rose by up to +134 % late in training (0.051 →
0.120) and three replies were rejected at ρ = 1; about twice the highest rise, as for the specs' own ρ."""


def gate_thresholds(model: str) -> GateThresholds:
    """The thresholds measured for ``model`` (a spec name), or the defaults."""
    return SPEC_THRESHOLDS.get(model, GateThresholds())
