"""The scripted expert: Cartesian waypoints for the grasp point, tracked with damped-least-squares IK.

It reads the true cube and target poses from the simulator (privileged information a learned policy does not
get) and plans, at reset, a top-down grasp: hover, descend, close, lift, carry, lower, open, retreat. Each
control step it interpolates the current waypoint segment and solves IK for the 5 arm joints, warm-started
from its previous command, so the commands are smooth joint targets just like a teleoperator's.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.env import HOME, SO100Env
from sim.scene import CUBE_HALF
from sim.units import JOINT_HIGH, JOINT_LOW, to_so100

ARM = slice(0, 5)  # the five arm joints; index 5 is the gripper
GRIP_OPEN = 0.6  # jaw angle (rad): ~6 cm between the pads
GRIP_CLOSED = -0.2  # commanded when holding: the pads stop on the cube and squeeze it


# --- pure helpers ---------------------------------------------------------------------------------------

def orientation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """Small-angle rotation (world frame, rad) that takes frame ``current`` to ``desired`` (3x3 matrices)."""
    return 0.5 * sum(np.cross(current[:, i], desired[:, i]) for i in range(3))


def top_down_frame(yaw: float) -> np.ndarray:
    """Grasp-site orientation with the fingers pointing straight down and the jaws closing along ``yaw``.

    In the site frame the fingers point along -y and the jaws close along x.
    """
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    y = np.array([0.0, 0.0, 1.0])
    return np.column_stack([x, y, np.cross(x, y)])


def grasp_yaw(cube_pos: np.ndarray, cube_yaw: float) -> float:
    """Jaw closing direction for a cube: one of its four face normals, the one nearest the arm's natural yaw.

    With the wrist unrolled the jaws close across the arm's reach direction (pan + 90 deg); picking the
    nearest of the cube's symmetric yaws keeps the wrist roll small.
    """
    natural = np.arctan2(cube_pos[1], cube_pos[0]) + np.pi / 2
    k = np.round((natural - cube_yaw) / (np.pi / 2))
    return float(cube_yaw + k * np.pi / 2)


def dls_step(jac: np.ndarray, err: np.ndarray, damping: float) -> np.ndarray:
    """One damped-least-squares step: argmin ||J dq - e||^2 + damping^2 ||dq||^2."""
    jjt = jac @ jac.T
    return jac.T @ np.linalg.solve(jjt + damping**2 * np.eye(len(err)), err)


@dataclass(frozen=True)
class IKConfig:
    iterations: int = 30
    damping: float = 0.02
    rot_weight: float = 0.15
    """Metres per radian: how much orientation counts against position (position wins where both can't)."""
    tol: float = 5e-4

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.damping <= 0 or self.rot_weight < 0 or self.tol <= 0:
            raise ValueError(f"invalid IKConfig {self}")


class IK:
    """Damped-least-squares IK for the grasp site on a private copy of the model's kinematics."""

    def __init__(self, model: mujoco.MjModel, qadr: np.ndarray, dofadr: np.ndarray,
                 config: IKConfig = IKConfig()):
        self.model, self.data = model, mujoco.MjData(model)
        self.qadr, self.dofadr, self.cfg = qadr, dofadr, config
        self.site = model.site("grasp").id
        self._jacp, self._jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))

    def solve(self, q: np.ndarray, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """Arm joints (radians, 6 with the gripper passed through) placing the grasp site at pos/rot."""
        q = q.copy()
        w = self.cfg.rot_weight
        for _ in range(self.cfg.iterations):
            self.data.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            cur_p, cur_r = self.data.site_xpos[self.site], self.data.site_xmat[self.site].reshape(3, 3)
            err = np.concatenate([pos - cur_p, w * orientation_error(cur_r, rot)])
            if np.linalg.norm(err) < self.cfg.tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dofadr[ARM]], w * self._jacr[:, self.dofadr[ARM]]])
            q[ARM] = np.clip(q[ARM] + dls_step(jac, err, self.cfg.damping), JOINT_LOW[ARM], JOINT_HIGH[ARM])
        return q


# --- the plan -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Waypoint:
    pos: np.ndarray
    yaw: float
    grip: float
    steps: int
    """Control steps to move from the previous waypoint to this one."""


@dataclass(frozen=True)
class ExpertConfig:
    hover: float = 0.07
    """Height of the hover points above the grasp height (m)."""
    grasp_depth: float = 0.0
    """Grasp point height above the cube centre (m)."""
    place_clearance: float = 0.006
    """The cube is released this far above resting height (m)."""
    speed: float = 1.0
    """Scales every segment's duration down (2.0 = twice as fast)."""

    def __post_init__(self) -> None:
        if not 0.02 <= self.hover <= 0.15 or self.speed <= 0:
            raise ValueError(f"invalid ExpertConfig {self}")


def plan_pick_place(cube_pos: np.ndarray, cube_yaw: float, target: np.ndarray, start: np.ndarray,
                    cfg: ExpertConfig = ExpertConfig()) -> list[Waypoint]:
    """Waypoints of a top-down pick-and-place from the grasp point's start position ``start``."""
    yaw = grasp_yaw(cube_pos, cube_yaw)
    grasp = cube_pos + np.array([0.0, 0.0, cfg.grasp_depth])
    place = np.array([target[0], target[1], CUBE_HALF + cfg.place_clearance + cfg.grasp_depth])
    up = np.array([0.0, 0.0, cfg.hover])
    t_yaw = grasp_yaw(target, yaw)  # keep the cube's grip yaw, turned with the arm; nearest symmetric face
    s = cfg.speed

    def n(steps: float) -> int:
        return max(1, round(steps / s))

    return [
        Waypoint(start, yaw, GRIP_OPEN, n(1)),
        Waypoint(grasp + up, yaw, GRIP_OPEN, n(30)),  # hover above the cube
        Waypoint(grasp, yaw, GRIP_OPEN, n(24)),  # descend
        Waypoint(grasp, yaw, GRIP_CLOSED, n(15)),  # close
        Waypoint(grasp + up, yaw, GRIP_CLOSED, n(18)),  # lift
        Waypoint(place + up, t_yaw, GRIP_CLOSED, n(30)),  # carry
        Waypoint(place, t_yaw, GRIP_CLOSED, n(18)),  # lower
        Waypoint(place, t_yaw, GRIP_OPEN, n(10)),  # open
        Waypoint(place + up, t_yaw, GRIP_OPEN, n(15)),  # retreat
    ]


def plan_reach(goal: np.ndarray, start: np.ndarray, cfg: ExpertConfig = ExpertConfig()) -> list[Waypoint]:
    yaw = np.arctan2(goal[1], goal[0]) + np.pi / 2
    return [Waypoint(start, yaw, GRIP_OPEN, 1),
            Waypoint(goal + np.array([0.0, 0.0, 0.04]), yaw, GRIP_OPEN, max(1, round(30 / cfg.speed))),
            Waypoint(goal, yaw, GRIP_OPEN, max(1, round(15 / cfg.speed))),
            Waypoint(goal, yaw, GRIP_OPEN, 10)]


def interpolate(plan: list[Waypoint], t: int) -> tuple[np.ndarray, float, float, bool]:
    """Grasp-site position, yaw and jaw angle at control step ``t`` (smoothstep within segments)."""
    for a, b in zip(plan, plan[1:], strict=False):
        if t < b.steps:
            u = t / b.steps
            u = u * u * (3 - 2 * u)
            return a.pos + u * (b.pos - a.pos), a.yaw + u * (b.yaw - a.yaw), a.grip + u * (b.grip - a.grip), False
        t -= b.steps
    last = plan[-1]
    return last.pos, last.yaw, last.grip, True


class ScriptedExpert:
    """Policy-like controller: ``reset(env)`` plans from the true state, ``expert(obs)`` gives the action."""

    uses_images = False

    def __init__(self, config: ExpertConfig = ExpertConfig(), ik: IKConfig = IKConfig()):
        self.cfg, self.ik_cfg = config, ik
        self.done = False

    def reset(self, env: SO100Env) -> None:
        self.ik = IK(env.model, env.arm_qadr, env.arm_dofadr, self.ik_cfg)
        self.ik.data.qpos[:] = env.data.qpos  # cube etc. do not matter for the arm's kinematics
        start = env.grasp_pos
        if env.task.has_cube:
            cube_pos, cube_yaw = env.cube_pose
            self.plan = plan_pick_place(cube_pos, cube_yaw, env.target_pos, start, self.cfg)
        else:
            self.plan = plan_reach(env.reach_goal, start, self.cfg)
        self.q = env.qpos
        self.t = 0
        self.done = False

    def __call__(self, observation: dict | None = None) -> np.ndarray:
        pos, yaw, grip, self.done = interpolate(self.plan, self.t)
        self.t += 1
        self.q = self.ik.solve(self.q, pos, top_down_frame(yaw))
        self.q[5] = grip
        return to_so100(self.q)


__all__ = ["HOME", "IK", "IKConfig", "ExpertConfig", "ScriptedExpert", "Waypoint", "plan_pick_place", "plan_reach"]
