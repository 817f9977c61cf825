"""zk0's offline SO-100 world: a MuJoCo arm, a scripted expert, a LeRobot dataset recorder, closed-loop eval.

Dependency direction: ``node`` <- ``sim`` <- ``aggregator`` (node never imports sim).
"""

import os

# Offscreen rendering without a display: EGL (Mesa's llvmpipe on CPU machines, the driver's on GPUs). Set before
# MuJoCo is imported; a user's own MUJOCO_GL (e.g. osmesa) wins.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder of recorded datasets: errors only on stderr

from sim.env import SO100Env
from sim.evaluate import (
    ConstantPolicy,
    EpisodeResult,
    EvalResult,
    LeRobotController,
    RandomPolicy,
    rollout,
    to_lerobot_batch,
)
from sim.expert import ExpertConfig, IKConfig, ScriptedExpert
from sim.record import Replay, expert_joint_stats, read_sim_meta, record_dataset, replay_episode
from sim.tasks import TASKS, Task, get_task
from sim.units import from_so100, to_so100
from sim.variation import (
    EVAL_SEEDS,
    HELDOUT_SEEDS,
    NODE_SEEDS,
    NodeSpec,
    Variation,
    eval_seeds,
    heldout_spec,
    node_variations,
    seed_split,
)

__all__ = [
    "EVAL_SEEDS", "HELDOUT_SEEDS", "NODE_SEEDS", "TASKS",
    "ConstantPolicy", "EpisodeResult", "EvalResult", "ExpertConfig", "IKConfig", "LeRobotController",
    "NodeSpec", "RandomPolicy", "Replay", "SO100Env", "ScriptedExpert", "Task", "Variation",
    "eval_seeds", "expert_joint_stats", "from_so100", "get_task", "heldout_spec", "node_variations", "read_sim_meta",
    "record_dataset", "replay_episode", "rollout", "seed_split", "to_lerobot_batch", "to_so100",
]
