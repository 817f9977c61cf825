"""Per-instance variation of the world, per-node variations and the seed split.

A :class:`Variation` fixes where cubes and targets may appear, how the front camera is placed and how the
scene is lit. Each node gets its own (``node_variations``), so the node datasets are genuinely non-IID: they
cover different parts of the workspace under different cameras and light, as real arms in different homes do.
Within a variation, everything an episode randomizes is drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

Range = tuple[float, float]

# Where a top-down grasp is comfortably reachable (m, arm base at the origin facing +x).
WORKSPACE_X: Range = (0.12, 0.28)
WORKSPACE_Y: Range = (-0.14, 0.14)


def _check_range(name: str, r: Range, bounds: Range | None = None) -> None:
    if len(r) != 2 or not r[0] <= r[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {r}")
    if bounds is not None and not (bounds[0] - 1e-9 <= r[0] and r[1] <= bounds[1] + 1e-9):
        raise ValueError(f"{name}={r} leaves the reachable workspace {bounds}")


@dataclass(frozen=True)
class Variation:
    """What differs between instances of the world (one per node, one for evaluation)."""

    cube_x: Range = WORKSPACE_X
    cube_y: Range = WORKSPACE_Y
    cube_yaw: Range = (-math.pi / 4, math.pi / 4)
    target_x: Range = WORKSPACE_X
    target_y: Range = WORKSPACE_Y
    """By default cubes and targets (the goals) come from the whole workspace: the evaluation's goals are all of it,
    so a policy that stays near the middle scores little (docs/fed-vs-central.md, "The benchmark")."""
    min_separation: float = 0.08
    """Least distance between cube and target centres (m), so that the cube never starts on the target."""
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Fixed shift of the front camera (m): each node's camera stands somewhere else."""
    camera_jitter: float = 0.005
    """Per-episode standard deviation of the front camera position (m)."""
    light: float = 0.5
    """Diffuse intensity of the key light (0..1)."""
    light_jitter: float = 0.05
    table_rgb: tuple[float, float, float] = (0.55, 0.5, 0.45)
    arm_jitter_deg: float = 3.0
    """Per-episode noise on the start pose of each arm joint (degrees)."""

    def __post_init__(self) -> None:
        _check_range("cube_x", self.cube_x, WORKSPACE_X)
        _check_range("cube_y", self.cube_y, WORKSPACE_Y)
        _check_range("target_x", self.target_x, WORKSPACE_X)
        _check_range("target_y", self.target_y, WORKSPACE_Y)
        _check_range("cube_yaw", self.cube_yaw, (-math.pi, math.pi))
        far = math.dist((self.cube_x[0], self.cube_y[0]), (self.target_x[1], self.target_y[1]))
        far = max(far, math.dist((self.cube_x[1], self.cube_y[1]), (self.target_x[0], self.target_y[0])),
                  math.dist((self.cube_x[0], self.cube_y[1]), (self.target_x[1], self.target_y[0])),
                  math.dist((self.cube_x[1], self.cube_y[0]), (self.target_x[0], self.target_y[1])))
        if not 0 <= self.min_separation < far:
            raise ValueError(f"min_separation={self.min_separation} cannot be met by these regions")
        if any(abs(c) > 0.1 for c in self.camera_offset) or not 0 <= self.camera_jitter <= 0.03:
            raise ValueError("camera_offset must stay within 10 cm and camera_jitter within 3 cm")
        if not 0.1 <= self.light <= 1.0 or not 0 <= self.light_jitter <= 0.3:
            raise ValueError("light must be in [0.1, 1] and light_jitter in [0, 0.3]")
        if not all(0 <= c <= 1 for c in self.table_rgb):
            raise ValueError("table_rgb components must be in [0, 1]")
        if not 0 <= self.arm_jitter_deg <= 10:
            raise ValueError("arm_jitter_deg must be in [0, 10]")


# Seed split. Node datasets draw their episodes from NODE_SEEDS; the held-out dataset for the server's eval
# loss from HELDOUT_SEEDS; closed-loop evaluation from EVAL_SEEDS. The ranges are disjoint and record_dataset
# refuses to record a node dataset from any other range.
NODE_SEEDS = range(0, 1_000_000)
NODE_SEED_STRIDE = 10_000
HELDOUT_SEEDS = range(1_000_000, 2_000_000)
EVAL_SEEDS = range(2_000_000, 3_000_000)


def eval_seeds(n: int = 100) -> list[int]:
    """The first ``n`` closed-loop evaluation seeds (never used by any dataset)."""
    if not 0 < n <= len(EVAL_SEEDS):
        raise ValueError(f"n must be in 1..{len(EVAL_SEEDS)}")
    return list(EVAL_SEEDS[:n])


def seed_split(seed: int) -> str:
    """Which split a seed belongs to: 'node', 'heldout' or 'eval'."""
    for name, r in (("node", NODE_SEEDS), ("heldout", HELDOUT_SEEDS), ("eval", EVAL_SEEDS)):
        if seed in r:
            return name
    raise ValueError(f"seed {seed} is outside every split")


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node's simulated dataset depends on."""

    name: str
    task: str
    variation: Variation
    seed: int
    """First episode seed; the node uses seeds seed .. seed + NODE_SEED_STRIDE - 1."""
    repo_id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.repo_id:
            object.__setattr__(self, "repo_id", f"zk0/sim_{self.name}")


def node_variations(n_nodes: int, tasks: tuple[str, ...] = ("pick_place",)) -> list[NodeSpec]:
    """One spec per node: its task (cycled from ``tasks``), its own slice of the workspace, camera and light.

    Node k's cubes come from the k-th of ``n_nodes`` lateral strips of the workspace (overlapping a little,
    so the nodes share some support) and its targets from the opposite side; its front camera is shifted,
    its light and table colour differ. Seeds come from disjoint blocks of NODE_SEEDS.
    """
    if not 1 <= n_nodes <= len(NODE_SEEDS) // NODE_SEED_STRIDE:
        raise ValueError("n_nodes must be at least 1 and leave each node a seed block")
    y0, y1 = WORKSPACE_Y
    width = (y1 - y0) / n_nodes
    specs = []
    for k in range(n_nodes):
        lo, hi = max(y0, y0 + k * width - 0.02), min(y1, y0 + (k + 1) * width + 0.02)
        phase = 2 * math.pi * k / max(n_nodes, 1)
        variation = replace(
            Variation(),
            cube_y=(round(lo, 4), round(hi, 4)),
            target_y=(round(-hi, 4), round(-lo, 4)),
            min_separation=0.06,
            camera_offset=(round(0.03 * math.cos(phase), 4), round(0.05 * math.sin(phase), 4),
                           round(0.02 * math.sin(2 * phase), 4)),
            light=round(0.4 + 0.3 * k / max(n_nodes - 1, 1), 3),
            table_rgb=(round(0.45 + 0.1 * math.cos(phase), 3), 0.48, round(0.42 + 0.1 * math.sin(phase), 3)),
        )
        specs.append(NodeSpec(name=f"node{k}", task=tasks[k % len(tasks)], variation=variation,
                              seed=NODE_SEEDS.start + k * NODE_SEED_STRIDE))
    return specs


def heldout_spec(task: str = "pick_place") -> NodeSpec:
    """The server's held-out dataset: the whole workspace, default camera and light, its own seeds."""
    return NodeSpec(name="heldout", task=task, variation=Variation(), seed=HELDOUT_SEEDS.start)


# The validation set's episodes: held-out seeds the held-out set never uses.
VALIDATION_SEED = HELDOUT_SEEDS.start + 500_000


def validation_spec(task: str = "pick_place") -> NodeSpec:
    """The aggregator's validation set (the gate's score): like the held-out set, with seeds of its own."""
    return NodeSpec(name="validation", task=task, variation=Variation(), seed=VALIDATION_SEED)
