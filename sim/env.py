"""The SO-100 world as a Gymnasium environment with LeRobot's observation and action layout.

Observation: ``observation.state`` (6,) float32 joint positions and ``observation.images.<camera>`` uint8
HxWx3, in ``so100_follower`` units (node.so100). Action: target joint positions (6,) in the same units,
tracked by position actuators at 30 Hz (16 physics substeps per step), as the real follower's servos do.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from node.so100 import CAMERAS, FPS, IMAGE_SHAPE, JOINTS
from sim.scene import CUBE_HALF, PHYSICS_SUBSTEPS, load_model
from sim.tasks import REACH_HEIGHT, get_task, hold_count, pick_place_success, reach_success
from sim.units import JOINT_HIGH, JOINT_LOW, SO100_HIGH, SO100_LOW, from_so100, to_so100
from sim.variation import Variation

_GL_PID: int | None = None
"""The process that has created a renderer (an OpenGL context); a process forked from it must not render."""


def renders_in_this_process() -> bool:
    """Whether this process holds a renderer's GL context (forked workers would hang on it)."""
    return _GL_PID == os.getpid()


HOME = np.array([0.0, -1.9, 1.75, 1.2, 0.0, 0.6])
"""Start pose (radians): arm folded above the table, gripper pointing down in front of the base, jaw open."""


class SO100Env(gym.Env):
    """A single SO-100 arm on a table; tasks ``reach`` and ``pick_place`` (see sim.tasks).

    ``reset(seed=s)`` is deterministic: the same seed gives the same cube, target, camera, light and start
    pose, and MuJoCo then reproduces the same trajectory for the same actions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task: str = "pick_place", seed: int | None = None, variation: Variation | None = None,
                 max_steps: int | None = None, cameras: tuple[str, ...] = CAMERAS,
                 image_shape: tuple[int, int, int] = IMAGE_SHAPE, render_images: bool = True):
        self.task = get_task(task)
        self.variation = variation or Variation()
        self.max_steps = max_steps or self.task.max_steps
        self.cameras = tuple(cameras) if render_images else ()
        self.image_shape = image_shape
        self.model = load_model(task)
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        names = [j.split(".")[0] for j in JOINTS]
        self.arm_qadr = np.array([self.model.joint(n).qposadr[0] for n in names])
        """Indices of the six joints (LeRobot order) in qpos; ``arm_dofadr`` the same in qvel/Jacobians."""
        self.arm_dofadr = np.array([self.model.joint(n).dofadr[0] for n in names])
        self._front_cam = self.model.camera("front").id
        self._front_pos0 = self.model.cam_pos[self._front_cam].copy()
        self._light = self.model.light("key").id
        self._table_mat = self.model.geom_matid[self.model.geom("table").id]
        self._target_body = self.model.body("target").id
        self._arm_geoms = {g for g in range(self.model.ngeom)
                           if self.model.geom_bodyid[g] not in (0, self._target_body)
                           and self.model.geom(g).name not in ("cube", "table")}
        self._arm_geom_ids = np.array(sorted(self._arm_geoms))
        self._cube_geom = self.model.geom("cube").id if self.task.has_cube else -1
        self._cube_qadr = self.model.joint("cube").qposadr[0] if self.task.has_cube else -1

        self.action_space = gym.spaces.Box(SO100_LOW, SO100_HIGH, dtype=np.float32)
        h, w, c = image_shape
        spaces: dict[str, gym.Space] = {
            "observation.state": gym.spaces.Box(SO100_LOW, SO100_HIGH, dtype=np.float32)}
        for cam in self.cameras:
            spaces[f"observation.images.{cam}"] = gym.spaces.Box(0, 255, (h, w, c), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.steps = 0
        self.held = 0
        """Consecutive steps the goal test has held (sim.tasks.hold_count); success at ``task.hold_steps``."""
        self._seed = seed

    # --- Gymnasium API -------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        seed = self._seed if seed is None else seed
        self.episode_seed = seed
        rng = np.random.default_rng(seed)
        v, m, d = self.variation, self.model, self.data
        mujoco.mj_resetData(m, d)

        q0 = HOME.copy()
        q0[:5] += np.deg2rad(rng.normal(0.0, v.arm_jitter_deg, 5))
        q0 = np.clip(q0, JOINT_LOW, JOINT_HIGH)
        d.qpos[self.arm_qadr] = q0
        d.ctrl[:] = q0

        target = np.array([rng.uniform(*v.target_x), rng.uniform(*v.target_y), 0.0])
        if self.task.has_cube:
            for _ in range(1000):
                cube = np.array([rng.uniform(*v.cube_x), rng.uniform(*v.cube_y)])
                if np.linalg.norm(cube - target[:2]) >= v.min_separation:
                    break
            yaw = rng.uniform(*v.cube_yaw)
            a = self._cube_qadr
            d.qpos[a:a + 3] = (cube[0], cube[1], CUBE_HALF)
            d.qpos[a + 3:a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        m.body_pos[self._target_body] = target

        m.cam_pos[self._front_cam] = self._front_pos0 + np.asarray(v.camera_offset) + rng.normal(
            0.0, v.camera_jitter, 3)
        m.light_diffuse[self._light] = np.clip(v.light + rng.normal(0.0, v.light_jitter), 0.05, 1.0)
        m.mat_rgba[self._table_mat, :3] = v.table_rgb

        mujoco.mj_forward(m, d)
        self.steps = self.held = 0
        return self._observation(), self._info()

    def step(self, action: np.ndarray, *, render: bool = True) -> tuple[dict, float, bool, bool, dict]:
        """Gymnasium's step. ``render=False`` leaves the camera images out of the returned observation, for a
        caller that knows its policy will not look at it (one that still has planned actions queued)."""
        action = np.asarray(action, dtype=np.float64).reshape(len(JOINTS))
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action {action}")
        self.data.ctrl[:] = np.clip(from_so100(action), JOINT_LOW, JOINT_HIGH)
        mujoco.mj_step(self.model, self.data, nstep=PHYSICS_SUBSTEPS)
        self.steps += 1
        self.held = hold_count(self.held, self.at_goal())
        info = self._info()
        success = info["is_success"]
        return self._observation(render), float(success), success, self.steps >= self.max_steps, info

    def render(self) -> np.ndarray:
        """The front camera at IMAGE_SHAPE (Gymnasium's rgb_array render)."""
        return self._render("front")

    def render_camera(self, camera: str) -> np.ndarray:
        """Any camera of the scene ("front", "wrist") at IMAGE_SHAPE, whether or not observations carry it."""
        return self._render(camera)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- state, for the expert and the success tests -----------------------------------------------

    @property
    def qpos(self) -> np.ndarray:
        """Arm joint positions in radians (6,), LeRobot's joint order."""
        return self.data.qpos[self.arm_qadr].copy()

    @property
    def grasp_pos(self) -> np.ndarray:
        return self.data.site("grasp").xpos.copy()

    @property
    def target_pos(self) -> np.ndarray:
        return self.data.xpos[self._target_body].copy()

    @property
    def reach_goal(self) -> np.ndarray:
        return self.target_pos + np.array([0.0, 0.0, REACH_HEIGHT])

    @property
    def cube_pose(self) -> tuple[np.ndarray, float]:
        """Cube centre (3,) and yaw (rad); only for tasks with a cube."""
        a = self._cube_qadr
        w, x, y, z = self.data.qpos[a + 3:a + 7]
        return self.data.qpos[a:a + 3].copy(), float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def cube_touches_arm(self) -> bool:
        pairs = self.data.contact.geom[: self.data.ncon]  # (ncon, 2), vectorised: this runs every step
        other = np.where(pairs[:, 0] == self._cube_geom, pairs[:, 1],
                         np.where(pairs[:, 1] == self._cube_geom, pairs[:, 0], -1))
        return bool(np.isin(other[other >= 0], self._arm_geom_ids).any())

    def is_success(self) -> bool:
        """The goal test has held for the task's ``hold_steps`` consecutive steps (counted by ``step``)."""
        return self.held >= self.task.hold_steps

    def at_goal(self) -> bool:
        """The task's goal test on the current state alone (sim.tasks)."""
        if self.task.name == "reach":
            return reach_success(self.grasp_pos, self.target_pos)
        return pick_place_success(self.cube_pose[0], self.target_pos, self.cube_touches_arm())

    # --- internals ------------------------------------------------------------------------------------

    def _observation(self, images: bool = True) -> dict[str, Any]:
        obs: dict[str, Any] = {"observation.state": to_so100(self.qpos)}
        for cam in self.cameras if images else ():
            obs[f"observation.images.{cam}"] = self._render(cam)
        return obs

    def _info(self) -> dict[str, Any]:
        return {"is_success": self.is_success(), "held": self.held, "seed": getattr(self, "episode_seed", None),
                "steps": self.steps}

    def _render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            global _GL_PID
            h, w, _ = self.image_shape
            self._renderer = mujoco.Renderer(self.model, height=h, width=w)
            _GL_PID = os.getpid()
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()
