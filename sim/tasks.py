"""The tasks: their instruction strings, episode lengths and success tests (pure functions of the state).

An episode succeeds when its goal test has held for ``Task.hold_steps`` consecutive control steps, not when it is
first true: a policy that passes through the goal, or wanders near it as an untrained one does, must not score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.scene import CUBE_HALF, TARGET_RADIUS

REACH_HEIGHT = 0.04
"""The reach goal is this far above the target disc's centre (m)."""


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    """The language instruction a VLA is conditioned on, stored as the dataset's ``task``."""
    max_steps: int
    """Episode limit at 30 Hz; the scripted expert needs about half of it."""
    has_cube: bool
    hold_steps: int = 15
    """Consecutive steps the goal test must hold for success: 0.5 s at 30 Hz, three of the ``learn`` policy's
    5-action chunks (docs/fed-vs-central.md, "The benchmark")."""


TASKS: dict[str, Task] = {
    "reach": Task("reach", "reach the target with the gripper", max_steps=150, has_cube=False),
    "pick_place": Task("pick_place", "pick up the red cube and place it on the target", max_steps=300,
                       has_cube=True),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def reach_success(grasp_pos: np.ndarray, target_pos: np.ndarray, tol: float = 0.02) -> bool:
    """The grasp point is within ``tol`` of the point REACH_HEIGHT above the target disc."""
    goal = np.asarray(target_pos, dtype=float) + np.array([0.0, 0.0, REACH_HEIGHT])
    return bool(np.linalg.norm(np.asarray(grasp_pos) - goal) < tol)


def pick_place_success(cube_pos: np.ndarray, target_pos: np.ndarray, cube_touches_arm: bool,
                       tol: float = TARGET_RADIUS - 0.005) -> bool:
    """The cube rests on the table inside the target disc and the gripper has let go of it."""
    cube_pos, target_pos = np.asarray(cube_pos), np.asarray(target_pos)
    on_target = np.linalg.norm(cube_pos[:2] - target_pos[:2]) < tol
    resting = cube_pos[2] < CUBE_HALF + 0.005
    return bool(on_target and resting and not cube_touches_arm)


def hold_count(held: int, at_goal: bool) -> int:
    """Consecutive steps at the goal after this one: one more while the goal test holds, none once it fails."""
    return held + 1 if at_goal else 0
