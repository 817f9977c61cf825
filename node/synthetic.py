"""Synthetic SO-100 datasets in LeRobot v3 format, made offline for tests and quick runs.

Each *task* has its own instruction and motion pattern, so nodes given different tasks hold non-IID data. The
cameras see a scene that depends on the arm's state (a blob that follows the end of the arm and a gripper-coloured
wrist view), so images carry information a policy can use. The simulator (``sim/``) makes physically grounded
demonstrations; this generator is for speed.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from node.errors import UserError
from node.so100 import CAMERAS, FPS, IMAGE_SHAPE, ROBOT_TYPE, so100_features

log = logging.getLogger(__name__)

TASKS: dict[str, str] = {
    "wave": "wave the arm left and right",
    "reach": "reach the target with the gripper",
    "circle": "move the arm in a circle",
    "grip": "open and close the gripper",
}
HELD_OUT_SEED_OFFSET = 1_000_000  # held-out episodes use seeds no node uses


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: one task, a seed, and the size."""

    task: str = "wave"
    seed: int = 0
    episodes: int = 4
    frames: int = 30

    def __post_init__(self) -> None:
        if self.task not in TASKS and self.task != "mixed":
            raise UserError(f"unknown synthetic task {self.task!r}: choose one of {sorted(TASKS)} or 'mixed'")
        if self.episodes < 1 or self.frames < 2:
            raise UserError("a synthetic dataset needs at least 1 episode of at least 2 frames")


def _trajectory(task: str, rng: np.random.Generator, frames: int) -> np.ndarray:
    """Joint positions (frames+1, 6) in so100_follower units for one episode of ``task``."""
    t = np.linspace(0.0, 1.0, frames + 1)[:, None]
    base = rng.uniform(-20, 20, size=6) * np.array([1, 1, 1, 1, 1, 0]) + np.array([0, 0, 0, 0, 0, 50])
    amp = rng.uniform(15, 35)
    q = np.repeat(base[None], frames + 1, axis=0)
    if task == "wave":
        q[:, 0] += amp * np.sin(2 * np.pi * t[:, 0] * rng.uniform(1.0, 2.0))
        q[:, 3] += 0.3 * amp * np.sin(4 * np.pi * t[:, 0])
    elif task == "reach":
        goal = rng.uniform(-40, 40, size=5)
        s = 3 * t[:, 0] ** 2 - 2 * t[:, 0] ** 3
        q[:, :5] += s[:, None] * (goal - base[:5])
        q[:, 5] = 50 + 40 * (s > 0.8)
    elif task == "circle":
        phase = 2 * np.pi * t[:, 0]
        q[:, 0] += amp * np.cos(phase)
        q[:, 1] += amp * np.sin(phase)
        q[:, 2] -= 0.5 * amp * np.sin(phase)
    elif task == "grip":
        q[:, 5] = 50 + 45 * np.sin(2 * np.pi * t[:, 0] * rng.uniform(1.5, 3.0))
        q[:, 4] += amp * t[:, 0]
    return q.astype(np.float32)


def _render(q: np.ndarray, cam: str, rng: np.random.Generator) -> np.ndarray:
    """A small picture of the arm state: a blob that follows the tip (front) or the gripper's colour (wrist)."""
    h, w, _ = IMAGE_SHAPE
    img = np.full(IMAGE_SHAPE, 40, dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    if cam == "front":
        cx = w / 2 + (q[0] / 90.0) * (w / 2.5)
        cy = h / 2 - (q[1] / 90.0) * (h / 2.5)
        blob = (xx - cx) ** 2 + (yy - cy) ** 2 < (6 + q[2] / 30.0) ** 2
        img[blob] = (220, 60, 60)
    else:
        g = np.clip(q[5] / 100.0, 0, 1)
        img[:, :] = (int(255 * g), 80, int(255 * (1 - g)))
        bar = np.abs(xx - w / 2 - q[4]) < 4
        img[bar] = (250, 250, 250)
    noise = rng.integers(0, 12, size=IMAGE_SHAPE, dtype=np.uint8)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def build_synthetic_dataset(root: Path, spec: SyntheticSpec, repo_id: str | None = None,
                            overwrite: bool = False) -> Path:
    """Write a LeRobot v3 dataset (video cameras) for ``spec`` to ``root`` and return ``root``."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder is chatty on stderr; keep its errors only
    root = Path(root)
    if root.exists() and not overwrite:
        return root
    # Written under a temporary name and renamed when complete, so a crash never leaves half a dataset.
    tmp = root.with_name(root.name + ".partial")
    for path in (root, tmp):
        if path.exists():
            shutil.rmtree(path)
    root.parent.mkdir(parents=True, exist_ok=True)
    repo_id = repo_id or f"local/{root.name}"
    ds = LeRobotDataset.create(repo_id, fps=FPS, features=so100_features(), root=tmp, robot_type=ROBOT_TYPE,
                               use_videos=True)
    rng = np.random.default_rng(spec.seed)
    tasks = sorted(TASKS)
    for ep in range(spec.episodes):
        task = tasks[ep % len(tasks)] if spec.task == "mixed" else spec.task
        q = _trajectory(task, rng, spec.frames)
        for i in range(spec.frames):
            state = q[i] + rng.normal(0, 0.3, size=6).astype(np.float32)
            frame = {"observation.state": state, "action": q[i + 1], "task": TASKS[task]}
            for cam in CAMERAS:
                frame[f"observation.images.{cam}"] = _render(q[i], cam, rng)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    tmp.rename(root)
    log.info("wrote synthetic dataset %s (%s, %d episodes x %d frames)", root, spec.task, spec.episodes,
             spec.frames)
    return root


def node_specs(n_nodes: int, seed: int = 0, episodes: int = 4, frames: int = 30) -> list[SyntheticSpec]:
    """One spec per node: tasks assigned round-robin and distinct seeds, so nodes hold different data."""
    tasks = sorted(TASKS)
    return [SyntheticSpec(tasks[i % len(tasks)], seed + 1 + i, episodes, frames) for i in range(n_nodes)]


def held_out_spec(seed: int = 0, episodes: int = 4, frames: int = 30) -> SyntheticSpec:
    """The server's evaluation set: every task, seeds no node uses."""
    return SyntheticSpec("mixed", HELD_OUT_SEED_OFFSET + seed, episodes, frames)


def validation_spec(episodes: int = 4, frames: int = 30) -> SyntheticSpec:
    """The aggregator's validation set (the gate's score): every task, seeds neither nodes nor held-out use."""
    return SyntheticSpec("mixed", 2 * HELD_OUT_SEED_OFFSET, episodes, frames)
