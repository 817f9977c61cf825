"""Closed-loop evaluation: run a policy in the simulator from held-out seeds and count successes.

Any policy-like object can be evaluated by the same loop:

- a LeRobot policy (``select_action``), given with its pre- and postprocessors; each step it gets the
  observation as LeRobot's dataset would give it (state (1, 6), images (1, 3, H, W) float in [0, 1], ``task``)
  and its action is unnormalized by the postprocessor;
- a controller: a callable ``obs -> action`` (so100 units), with an optional ``reset(env)`` called after each
  ``env.reset`` (the scripted expert and the baselines below are controllers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from node.so100 import CAMERAS, FPS
from sim.env import SO100Env, renders_in_this_process
from sim.variation import Variation, eval_seeds, seed_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    success: bool
    length: int
    """Steps until success, or the episode limit on failure."""
    video: str | None = None
    longest_hold: int = 0
    """The longest run of consecutive steps at the goal: the task's ``hold_steps`` on success, and on failure how
    close the policy came to holding (what a shorter hold would have scored)."""


@dataclass(frozen=True)
class EvalResult:
    success_rate: float
    mean_length: float
    per_seed: list[EpisodeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The success rate's Wilson score interval (95 % by default) over the episodes run."""
        return wilson_interval(sum(r.success for r in self.per_seed), len(self.per_seed), z)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate: unlike the normal approximation it stays inside [0, 1] and is not
    empty at 0 or n successes, where a benchmark's floor and ceiling lie (0/100 gives 0-3.7 %)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


# --- policy adapters -----------------------------------------------------------------------------------

def to_lerobot_batch(observation: dict[str, np.ndarray], instruction: str) -> dict[str, Any]:
    """Gym observation -> a batch of one, in LeRobot's dataset format (what its preprocessors expect)."""
    import torch

    batch: dict[str, Any] = {"task": [instruction]}
    for key, value in observation.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if key.startswith("observation.images."):
            t = t.permute(2, 0, 1).float() / 255.0
        batch[key] = t.float().unsqueeze(0)
    return batch


class LeRobotController:
    """A LeRobot policy with its processors, seen as a controller."""

    def __init__(self, policy, preprocessor: Callable | None = None, postprocessor: Callable | None = None):
        self.policy = policy
        self.preprocessor = preprocessor or (lambda x: x)
        self.postprocessor = postprocessor or (lambda x: x)
        self.instruction = ""

    def reset(self, env: SO100Env) -> None:
        self.policy.reset()
        self.instruction = env.task.instruction

    def needs_observation(self) -> bool:
        """Whether the next call will look at the observation. A policy with action chunking (SmolVLA, ACT...)
        queues ``n_action_steps`` actions and looks at the world only when its queue is empty; until then the
        simulator need not render the cameras."""
        queue = getattr(self.policy, "_queues", {}).get("action")
        return queue is None or len(queue) == 0

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if not self.needs_observation():  # the next planned action, as select_action would return it
                action = self.postprocessor(self.policy._queues["action"].popleft())
            else:
                batch = self.preprocessor(to_lerobot_batch(observation, self.instruction))
                action = self.postprocessor(self.policy.select_action(batch))
        return action.detach().to("cpu").numpy().reshape(-1)


class RandomPolicy:
    """Uniform random joint targets over the whole action space, seeded per episode."""

    uses_images = False

    def reset(self, env: SO100Env) -> None:
        self.space = env.action_space
        self.rng = np.random.default_rng(env.episode_seed)

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.rng.uniform(self.space.low, self.space.high).astype(np.float32)


class ConstantPolicy:
    """Holds one action: the arm's start pose (default) or a fixed ``action``."""

    uses_images = False

    def __init__(self, action: np.ndarray | None = None):
        self.action = None if action is None else np.asarray(action, dtype=np.float32)
        self._hold: np.ndarray | None = None

    def reset(self, env: SO100Env) -> None:
        self._hold = None

    def __call__(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        if self.action is not None:
            return self.action
        if self._hold is None:
            self._hold = observation["observation.state"].copy()
        return self._hold


def as_controller(policy, preprocessor=None, postprocessor=None):
    """Wrap a LeRobot policy (anything with ``select_action``); return controllers as they are."""
    if hasattr(policy, "select_action"):
        return LeRobotController(policy, preprocessor, postprocessor)
    if not callable(policy):
        raise TypeError(f"{type(policy).__name__} is neither a LeRobot policy nor a callable controller")
    return policy


# --- the loop ------------------------------------------------------------------------------------------

def quiet_ffmpeg() -> None:
    """ffmpeg's errors only, not its per-video statistics. Called before each encode: LeRobot's video code puts
    ffmpeg's default (verbose) logging back when it finishes one."""
    import av.logging

    av.logging.set_level(av.logging.ERROR)


def rollout(policy, preprocessor: Callable | None = None, postprocessor: Callable | None = None,
            task: str = "pick_place", seeds: Sequence[int] | None = None, max_steps: int | None = None,
            video_dir: Path | str | None = None, *, variation: Variation | None = None, max_videos: int = 4,
            progress: bool = False, workers: int = 1) -> EvalResult:
    """Run ``policy`` once from each seed (default: the first 10 evaluation seeds) and measure success.

    An episode ends at success (the goal held for the task's ``hold_steps``) or after ``max_steps`` (default: the
    task's limit). With ``video_dir``, the first ``max_videos`` episodes are written there as ``seed_<seed>.mp4``
    (front and wrist cameras side by side), e.g. ``outputs/<run>/evaluate/round_<r>/``. ``workers`` > 1 runs the
    episodes in that many forked processes (one torch and one rendering thread each), with the same results as in one.
    """
    seeds = list(eval_seeds(10) if seeds is None else seeds)
    if not seeds:
        raise ValueError("no seeds to evaluate")
    if any(seed_split(s) != "eval" for s in seeds):
        log.warning("evaluating on seeds outside EVAL_SEEDS: the result is not a held-out measure")
    if video_dir is not None:
        video_dir = Path(video_dir)
        video_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(as_controller(policy, preprocessor, postprocessor), task, max_steps, variation, video_dir,
               frozenset(seeds[:max_videos]) if video_dir is not None else frozenset())
    workers = max(1, min(workers, len(seeds)))
    if workers > 1 and renders_in_this_process():
        log.warning("closed-loop evaluation in one process: this process has rendered already, and processes "
                    "forked from an OpenGL context hang")
        workers = 1
    if workers == 1:
        results = _episodes(job, seeds, progress)
    else:
        results = _episodes_forked(job, seeds, workers)
    rate = float(np.mean([r.success for r in results]))
    mean_length = float(np.mean([r.length for r in results]))
    log.info("%s: success %.1f%% over %d seeds, mean length %.1f", task, 100 * rate, len(results), mean_length)
    return EvalResult(rate, mean_length, results)


@dataclass(frozen=True)
class _Job:
    controller: Any
    task: str
    max_steps: int | None
    variation: Variation | None
    video_dir: Path | None
    video_seeds: frozenset[int]


def _episodes(job: _Job, seeds: Sequence[int], progress: bool = False) -> list[EpisodeResult]:
    """One episode per seed, in this process. A stochastic policy's draws (SmolVLA's flow-matching noise) are
    seeded by the episode's seed, so an evaluation repeats exactly, in one process or in several."""
    import torch
    from lerobot.utils.io_utils import write_video

    controller = job.controller
    # Controllers that ignore images (expert, baselines) run without rendering: ~20x faster.
    env = SO100Env(job.task, variation=job.variation, max_steps=job.max_steps,
                   render_images=getattr(controller, "uses_images", True))
    results = []
    rng_state = torch.random.get_rng_state()  # given back after: the caller's random stream goes on as it was
    try:
        for seed in tqdm(seeds, desc=f"eval {job.task}", unit="ep", disable=not progress):
            obs, info = env.reset(seed=seed)
            torch.manual_seed(seed)
            if hasattr(controller, "reset"):
                controller.reset(env)
            record = seed in job.video_seeds
            frames = [_video_frame(env, obs)] if record else []
            success, steps, longest = False, 0, 0
            while not success and steps < env.max_steps:
                action = controller(obs)
                # Render only what is looked at: the policy's next observation, or a video frame.
                needs = getattr(controller, "needs_observation", lambda: True)()
                obs, _, success, _, info = env.step(action, render=needs or record)
                steps += 1
                longest = max(longest, info["held"])
                if record:
                    frames.append(_video_frame(env, obs))
            video = None
            if record:
                video = str(job.video_dir / f"seed_{seed}.mp4")
                quiet_ffmpeg()
                write_video(video, frames, fps=FPS)
            results.append(EpisodeResult(seed, bool(success), steps, video, longest))
    finally:
        env.close()
        torch.random.set_rng_state(rng_state)
    return results


_FORKED_JOB: _Job | None = None
"""The job forked workers run: inherited with the process (a policy need not be pickled)."""


def _forked_episodes(seeds: list[int]) -> list[EpisodeResult]:
    os.environ["LP_NUM_THREADS"] = "1"  # one rendering thread: at 128x96 more threads cost more than they save
    import torch

    torch.set_num_threads(1)
    return _episodes(_FORKED_JOB, seeds)


def _episodes_forked(job: _Job, seeds: list[int], workers: int) -> list[EpisodeResult]:
    """The episodes dealt round-robin to ``workers`` forked processes; results in the order of ``seeds``.

    Fork keeps start-up to milliseconds (the policy and the imports are inherited). The caller must hold no GL
    context of its own (``rollout`` checks) and run torch with one thread (an OpenMP pool does not survive fork).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    global _FORKED_JOB
    _FORKED_JOB = job
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_forked_episodes, [seeds[i::workers] for i in range(workers)]))
    finally:
        _FORKED_JOB = None
    results: list[EpisodeResult] = [None] * len(seeds)  # type: ignore[list-item]
    for i, part in enumerate(parts):
        results[i::workers] = part
    return results


def _video_frame(env: SO100Env, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Front and wrist views side by side (from the observation, or rendered if the policy needs none)."""
    views = [obs.get(f"observation.images.{cam}") for cam in CAMERAS]
    return np.concatenate([v if v is not None else env.render_camera(cam) for v, cam in zip(views, CAMERAS,
                                                                                            strict=True)], axis=1)
