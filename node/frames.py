"""A LeRobot video dataset decoded once into memory, for training loops that take many steps over few frames.

LeRobot's dataset seeks into the video for every item (~30 ms an item on these cores), which costs more than a
training step of a small SmolVLA. ``FrameCache`` decodes each video file once, in order, keeps the frames as uint8,
and gives items with the keys and shapes SmolVLA's training reads from LeRobot's own items.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

IMAGE_PREFIX = "observation.images."
CACHE_LIMIT_MB = 2048
"""Default ceiling of a decoded dataset kept in memory (``ZK0_FRAME_CACHE_MB``); above it, LeRobot's own dataset."""


def decoded_mb(dataset) -> float:
    """Memory the dataset's camera frames take decoded (uint8), in MB."""
    import math

    meta = dataset.meta
    return len(dataset) * sum(math.prod(meta.features[key]["shape"]) for key in meta.video_keys) / 2**20


def in_memory(dataset, chunk: int, limit_mb: float | None = None):
    """``FrameCache`` of ``dataset`` when its decoded frames fit ``limit_mb``, else the dataset as it is.

    A node's small simulated dataset (6,000 frames of two 128x96 cameras: 420 MB) trains ~10x faster decoded once;
    a real arm's recordings (hours at 640x480) stay on disk and are decoded item by item, as LeRobot does.
    """
    limit = float(os.environ.get("ZK0_FRAME_CACHE_MB", CACHE_LIMIT_MB)) if limit_mb is None else limit_mb
    if not dataset.meta.video_keys or decoded_mb(dataset) > limit:
        return dataset
    cache = FrameCache(dataset, chunk)
    cache.check(dataset)
    return cache


class FrameCache(torch.utils.data.Dataset):
    """A LeRobot video dataset decoded once into memory, items as LeRobot gives them to SmolVLA.

    LeRobot seeks into the video for every item (~30 ms each here); this decodes each video file once, in order,
    and keeps the frames as uint8. Items carry what SmolVLA's training reads: the cameras (3, H, W) in [0, 1], the
    state (1, 6), the action chunk (chunk, 6) clamped at the episode's end with ``action_is_pad``, and the task.
    ``check`` compares a few items with LeRobot's own.
    """

    def __init__(self, dataset, chunk: int):
        import av
        import numpy as np

        meta, fps = dataset.meta, dataset.meta.fps
        self.meta, self.delta_timestamps = meta, dataset.delta_timestamps  # as LeRobot's dataset has them
        hf = dataset.hf_dataset.with_format("numpy")
        state = torch.from_numpy(np.stack(hf["observation.state"])).float()
        action = torch.from_numpy(np.stack(hf["action"])).float()
        episode = np.asarray(hf["episode_index"])
        frame = np.asarray(hf["frame_index"])
        episodes = meta.episodes
        end = np.asarray(episodes["dataset_to_index"])[episode]
        steps = np.arange(len(state))[:, None] + np.arange(chunk)[None, :]
        self.action = action[torch.from_numpy(np.minimum(steps, end[:, None] - 1))]
        self.action_is_pad = torch.from_numpy(steps >= end[:, None])
        self.state = state[:, None, :]
        names = dict(zip(meta.tasks["task_index"].tolist(), meta.tasks.index.tolist(), strict=True))
        self.tasks = [names[int(i)] for i in np.asarray(hf["task_index"])]
        self.images: dict[str, torch.Tensor] = {}
        for key in meta.video_keys:
            files: dict[Path, np.ndarray] = {}
            out = []
            for i in range(len(state)):
                ep = int(episode[i])
                path = dataset.root / meta.get_video_file_path(ep, key)
                if path not in files:
                    with av.open(str(path)) as container:
                        files[path] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
                first = round(float(episodes[f"videos/{key}/from_timestamp"][ep]) * fps)
                out.append(files[path][first + int(frame[i])])
            self.images[key] = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.state)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i].float() / 255 for k, v in self.images.items()}
        item.update({"observation.state": self.state[i], "action": self.action[i],
                     "action_is_pad": self.action_is_pad[i], "task": self.tasks[i]})
        return item

    def check(self, dataset, n: int = 5) -> None:
        """Raise unless ``n`` spread items equal LeRobot's (images to one uint8 step)."""
        for i in torch.linspace(0, len(self) - 1, n).long().tolist():
            ours, theirs = self[i], dataset[i]
            for key, value in ours.items():
                if key == "task":
                    assert value == theirs[key], (i, key)
                    continue
                tol = 1.01 / 255 if key.startswith(IMAGE_PREFIX) else 0
                if value.shape != theirs[key].shape or (value.float() - theirs[key].float()).abs().max() > tol:
                    raise AssertionError(f"item {i}: {key} differs from LeRobot's")
