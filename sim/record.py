"""Record scripted-expert demonstrations into a LeRobot v3 dataset (only successful episodes).

The dataset has exactly ``node.so100.so100_features()``, robot type ``so100_follower`` and 30 fps, so a node
cannot tell it from a real SO-100 recording by its layout. What makes it reproducible (task, variation, the seed
of every episode) goes into ``meta/zk0_sim.json`` beside LeRobot's own metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from node.so100 import FPS, ROBOT_TYPE, so100_features
from sim.env import SO100Env
from sim.evaluate import quiet_ffmpeg
from sim.expert import ExpertConfig, ScriptedExpert
from sim.variation import Variation, seed_split

log = logging.getLogger(__name__)

SIM_META = "meta/zk0_sim.json"
HOLD_STEPS = 5
"""Frames recorded after the expert's plan ends (the arm at rest), so episodes end in a settled state."""


def record_dataset(root: Path, repo_id: str, task: str = "pick_place", episodes: int = 10, seed: int = 0,
                   variation: Variation | None = None, max_steps: int | None = None, *,
                   split: str = "node", expert: ExpertConfig | None = None, max_attempts: int | None = None,
                   use_videos: bool = True, overwrite: bool = False, progress: bool = True) -> Path:
    """Record ``episodes`` successful expert episodes of ``task`` into a new LeRobot dataset at ``root``.

    Episode attempts use seeds ``seed, seed + 1, ...``; failed attempts are discarded, so the dataset is
    deterministic per (seed, variation, task). Every seed must lie in ``split`` ('node' or 'heldout'):
    closed-loop evaluation seeds are never recorded. Returns ``root``.
    """
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    if split not in ("node", "heldout"):
        raise ValueError(f"split must be 'node' or 'heldout', not {split!r} (evaluation seeds are never recorded)")
    max_attempts = max_attempts or 2 * episodes + 5
    for s in (seed, seed + max_attempts - 1):
        if seed_split(s) != split:
            raise ValueError(f"seed {s} is in the {seed_split(s)!r} split, not {split!r}; see sim.variation")
    root = Path(root)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"{root} exists; pass overwrite=True to replace it")
        shutil.rmtree(root)

    from datasets.utils.logging import disable_progress_bar
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    disable_progress_bar()  # LeRobot's per-episode "Map" bars; the episode bar below is the progress shown
    variation = variation or Variation()
    expert_cfg = expert or ExpertConfig()
    env = SO100Env(task, variation=variation, max_steps=max_steps)
    policy = ScriptedExpert(expert_cfg)
    dataset = LeRobotDataset.create(repo_id, fps=FPS, features=so100_features(), root=root,
                                    robot_type=ROBOT_TYPE, use_videos=use_videos)
    kept: list[int] = []
    bar = tqdm(total=episodes, desc=f"record {repo_id}", unit="ep", disable=not progress)
    try:
        attempts = 0
        for s in range(seed, seed + max_attempts):
            if len(kept) == episodes:
                break
            attempts += 1
            frames = _expert_episode(env, policy, s)
            for frame in frames:
                dataset.add_frame({**frame, "task": env.task.instruction})
            if env.is_success():
                quiet_ffmpeg()
                dataset.save_episode()
                kept.append(s)
                bar.update(1)
            else:
                dataset.clear_episode_buffer()
                log.info("seed %d: expert failed, episode discarded", s)
            bar.set_postfix(attempts=attempts)
    finally:
        bar.close()
        dataset.finalize()
        env.close()
    if len(kept) < episodes:
        raise RuntimeError(f"only {len(kept)}/{episodes} successful episodes in {max_attempts} attempts")

    meta = {"task": task, "instruction": env.task.instruction, "split": split, "episode_seeds": kept,
            "variation": dataclasses.asdict(variation), "expert": dataclasses.asdict(expert_cfg),
            "max_steps": env.max_steps}
    (root / SIM_META).write_text(json.dumps(meta, indent=2))
    log.info("recorded %d episodes (%d attempts) of %s into %s", len(kept), attempts, task, root)
    return root


def _expert_episode(env: SO100Env, policy: ScriptedExpert, seed: int) -> list[dict]:
    """Run the expert from ``reset(seed)`` until its plan ends (plus HOLD_STEPS) or ``env.max_steps``."""
    obs, _ = env.reset(seed=seed)
    policy.reset(env)
    frames, hold = [], 0
    while len(frames) < env.max_steps and hold < HOLD_STEPS:
        action = policy(obs)
        frames.append({**obs, "action": action})
        obs, *_ = env.step(action)
        hold += policy.done
    return frames


def read_sim_meta(root: Path) -> dict:
    """The simulator's record of a dataset: task, variation, split and the seed of every episode."""
    path = Path(root) / SIM_META
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: {root} was not recorded by sim.record")
    meta = json.loads(path.read_text())
    v = meta["variation"]
    meta["variation"] = Variation(**{k: tuple(x) if isinstance(x, list) else x for k, x in v.items()})
    return meta


class Replay(NamedTuple):
    success: bool
    """Whether the replayed episode ends in success."""
    max_state_error: float
    """Largest difference between replayed and recorded ``observation.state`` (so100 units)."""


def replay_episode(root: Path, repo_id: str, episode: int) -> Replay:
    """Replay a recorded episode's actions open-loop from its seed, comparing states with the recording.

    MuJoCo is deterministic, so this reproduces the recorded outcome exactly: a check that a dataset is what
    the simulator says it is.
    """
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    sim_meta = read_sim_meta(root)
    dataset = LeRobotDataset(repo_id, root=root, episodes=[episode], video_backend="pyav")
    frames = dataset.hf_dataset.with_format("numpy")
    actions = np.stack(frames["action"]).astype(np.float32)
    states = np.stack(frames["observation.state"]).astype(np.float32)
    env = SO100Env(sim_meta["task"], variation=sim_meta["variation"], max_steps=sim_meta["max_steps"],
                   render_images=False)
    try:
        obs, _ = env.reset(seed=sim_meta["episode_seeds"][episode])
        error = 0.0
        for state, action in zip(states, actions, strict=True):
            error = max(error, float(np.abs(obs["observation.state"] - state).max()))
            obs, *_ = env.step(action)
        return Replay(env.is_success(), error)
    finally:
        env.close()
