"""Record scripted-expert demonstrations into a LeRobot v3 dataset (only successful episodes).

The dataset has exactly ``node.so100.so100_features()``, robot type ``so100_follower`` and 30 fps, so a node
cannot tell it from a real SO-100 recording by its layout. What makes it reproducible (task, variation, the seed
of every episode) goes into ``meta/zk0_sim.json`` beside LeRobot's own metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from node.so100 import FPS, ROBOT_TYPE, so100_features
from sim.env import SO100Env
from sim.evaluate import quiet_ffmpeg
from sim.expert import ExpertConfig, ScriptedExpert
from sim.tasks import get_task
from sim.variation import NODE_SEEDS, Variation, seed_split

log = logging.getLogger(__name__)

SIM_META = "meta/zk0_sim.json"


def record_dataset(root: Path, repo_id: str, task: str = "pick_place", episodes: int = 10, seed: int = 0,
                   variation: Variation | None = None, max_steps: int | None = None, *,
                   split: str = "node", expert: ExpertConfig | None = None, max_attempts: int | None = None,
                   use_videos: bool = True, overwrite: bool = False, progress: bool = True,
                   workers: int = 1) -> Path:
    """Record ``episodes`` successful expert episodes of ``task`` into a new LeRobot dataset at ``root``.

    Episode attempts use seeds ``seed, seed + 1, ...``; failed attempts are discarded, so the dataset is
    deterministic per (seed, variation, task). Every seed must lie in ``split`` ('node' or 'heldout'):
    closed-loop evaluation seeds are never recorded. Returns ``root``.

    The expert first runs every attempt without cameras (MuJoCo is deterministic and rendering does not touch
    the physics, so this finds the successful seeds at ~0.1 s an episode); only those are then rendered and
    recorded, with the videos encoded while the episode runs. With ``workers > 1`` each worker process records a
    contiguous slice of those seeds into its own dataset and the slices are merged in seed order: the same
    episodes in the same order as with one worker.
    """
    if episodes < 1:
        raise ValueError("episodes must be >= 1")
    if workers < 1:
        raise ValueError("workers must be >= 1")
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

    variation = variation or Variation()
    expert_cfg = expert or ExpertConfig()
    kept, limit = successful_seeds(task, range(seed, seed + max_attempts), episodes, variation, max_steps,
                                   expert_cfg)
    if len(kept) < episodes:
        raise RuntimeError(f"only {len(kept)}/{episodes} successful episodes in {max_attempts} attempts")

    workers = min(workers, len(kept))
    if workers == 1:
        _record_seeds(root, repo_id, task, kept, variation, max_steps, expert_cfg, use_videos, progress)
    else:
        _record_parallel(root, repo_id, task, kept, variation, max_steps, expert_cfg, use_videos, workers)

    meta = {"task": task, "instruction": get_task(task).instruction, "split": split, "episode_seeds": kept,
            "variation": dataclasses.asdict(variation), "expert": dataclasses.asdict(expert_cfg),
            "max_steps": limit}
    (root / SIM_META).write_text(json.dumps(meta, indent=2))
    log.info("recorded %d episodes (%d attempts) of %s into %s", len(kept), kept[-1] - seed + 1, task, root)
    return root


def successful_seeds(task: str, seeds: Sequence[int], episodes: int, variation: Variation,
                     max_steps: int | None, expert: ExpertConfig) -> tuple[list[int], int]:
    """The first ``episodes`` seeds on which the expert succeeds (run without cameras), and the episode limit."""
    env = SO100Env(task, variation=variation, max_steps=max_steps, render_images=False)
    policy = ScriptedExpert(expert)
    kept: list[int] = []
    try:
        for s in seeds:
            if len(kept) == episodes:
                break
            _expert_episode(env, policy, s)
            if env.is_success():
                kept.append(s)
            else:
                log.info("seed %d: expert failed, episode discarded", s)
    finally:
        env.close()
    return kept, env.max_steps


def expert_joint_stats(tasks: Sequence[str] = ("reach", "pick_place"), episodes: int = 50,
                       variation: Variation | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the expert's joint states and actions (so100 units) over the first
    ``episodes`` node seeds of each task, run without cameras: where the arm moves in this workspace, the source
    of the ``learn`` spec's normalisation (node.model.SO100_SIM_MEAN/STD)."""
    values = []
    for task in tasks:
        env = SO100Env(task, variation=variation or Variation(), render_images=False)
        expert = ScriptedExpert()
        try:
            for seed in NODE_SEEDS[:episodes]:
                for frame in _expert_episode(env, expert, seed):
                    values += [frame["observation.state"], frame["action"]]
        finally:
            env.close()
    values = np.asarray(values, dtype=np.float64)
    return values.mean(axis=0), values.std(axis=0)


def _record_seeds(root: Path, repo_id: str, task: str, seeds: Sequence[int], variation: Variation,
                  max_steps: int | None, expert: ExpertConfig, use_videos: bool, progress: bool) -> Path:
    """Render and record the expert on each of ``seeds`` (all known to succeed) into a new dataset."""
    from datasets.utils.logging import disable_progress_bar
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    disable_progress_bar()  # LeRobot's per-episode "Map" bars; the episode bar below is the progress shown
    env = SO100Env(task, variation=variation, max_steps=max_steps)
    policy = ScriptedExpert(expert)
    quiet_ffmpeg()
    # Streaming encoding: frames go to the video encoder (a thread per camera) as they are rendered, not to PNG
    # files first. The queue holds a whole episode, so the encoder never drops a frame.
    dataset = LeRobotDataset.create(repo_id, fps=FPS, features=so100_features(use_videos=use_videos), root=root,
                                    robot_type=ROBOT_TYPE, use_videos=use_videos, streaming_encoding=use_videos,
                                    encoder_queue_maxsize=env.max_steps + 1)
    try:
        for s in tqdm(seeds, desc=f"record {repo_id}", unit="ep", disable=not progress):
            frames = _expert_episode(env, policy, s)
            if not env.is_success():  # cannot happen: the same seed succeeded without cameras
                raise RuntimeError(f"seed {s}: the expert failed while recording, though it succeeded unrendered")
            for frame in frames:
                dataset.add_frame({**frame, "task": env.task.instruction})
            quiet_ffmpeg()
            dataset.save_episode()
    finally:
        dataset.finalize()
        env.close()
    return root


def _record_worker(args: tuple) -> str:
    # One rendering thread per worker: at 128x96 the software renderer's threads cost more than they save.
    os.environ["LP_NUM_THREADS"] = "1"
    return str(_record_seeds(*args, progress=False))


def _record_parallel(root: Path, repo_id: str, task: str, seeds: list[int], variation: Variation,
                     max_steps: int | None, expert: ExpertConfig, use_videos: bool, workers: int) -> None:
    """Record contiguous slices of ``seeds`` in ``workers`` processes, then merge them in order into ``root``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from lerobot.datasets.aggregate import aggregate_datasets

    parts_dir = root.with_name(f".{root.name}.parts")
    shutil.rmtree(parts_dir, ignore_errors=True)
    bounds = [round(i * len(seeds) / workers) for i in range(workers + 1)]
    jobs = [(parts_dir / f"part{i}", f"{repo_id}_part{i}", task, seeds[a:b], variation, max_steps, expert,
             use_videos) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    try:
        # fork: the workers start at once, with this process's imports (no GL context exists here yet).
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_record_worker, jobs))
        aggregate_datasets(repo_ids=[job[1] for job in jobs], aggr_repo_id=repo_id, roots=parts, aggr_root=root)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def _expert_episode(env: SO100Env, policy: ScriptedExpert, seed: int) -> list[dict]:
    """Run the expert from ``reset(seed)`` until it has stayed at its plan's end for the task's ``hold_steps`` and
    succeeded (held the goal that long), or ``env.max_steps``: a demonstration shows the holding that success asks
    of a policy, the arm still at the goal, not only its arrival."""
    obs, _ = env.reset(seed=seed)
    policy.reset(env)
    frames, after = [], 0
    while len(frames) < env.max_steps and not (after >= env.task.hold_steps and env.is_success()):
        action = policy(obs)
        frames.append({**obs, "action": action})
        obs, *_ = env.step(action)
        after += policy.done
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
