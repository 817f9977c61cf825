"""Offline fixtures for runs without the Hub: one non-IID dataset per node and the server's held-out set.

Built once under the cache directory and reused (a dataset folder with ``meta/info.json`` is complete: builders
write to a temporary name first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from node.synthetic import build_synthetic_dataset, held_out_spec, node_specs, validation_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fixtures:
    nodes: list[str]  # dataset URIs, one per node
    heldout: str  # the server's final evaluation set
    validation: str  # the gate's validation set: no node trains on it, and it is not the held-out set


def synthetic_fixtures(cache_dir: Path, n_nodes: int, episodes: int = 4, frames: int = 30) -> Fixtures:
    """Synthetic SO-100 datasets: node i gets task i mod 4 and its own seed; held-out mixes every task."""
    root = Path(cache_dir) / "datasets" / "synthetic"
    uris = []
    for i, spec in enumerate(node_specs(n_nodes, episodes=episodes, frames=frames)):
        path = root / f"node{i}-{spec.task}-s{spec.seed}-e{episodes}x{frames}"
        build_synthetic_dataset(path, spec)
        uris.append(f"local:{path}")
    held = held_out_spec(episodes=episodes, frames=frames)
    path = root / f"heldout-s{held.seed}-e{episodes}x{frames}"
    build_synthetic_dataset(path, held)
    val = validation_spec(episodes=episodes, frames=frames)
    val_path = root / f"validation-s{val.seed}-e{episodes}x{frames}"
    build_synthetic_dataset(val_path, val)
    return Fixtures(uris, f"local:{path}", f"local:{val_path}")


def sim_fixtures(cache_dir: Path, n_nodes: int, episodes: int = 4, tasks: tuple[str, ...] = ("pick_place",),
                 heldout_episodes: int | None = None) -> Fixtures:
    """Scripted-expert demonstrations from the MuJoCo SO-100 world: each node its own workspace strip, camera,
    light and seed block (non-IID); the held-out set covers the whole workspace with seeds no node uses."""
    from sim import heldout_spec, node_variations, record_dataset
    from sim.variation import validation_spec

    root = Path(cache_dir) / "datasets" / "sim-r3"  # r3: goals held 15 steps, over the whole workspace
    uris = []
    for spec in node_variations(n_nodes, tasks):
        path = root / f"{spec.name}of{n_nodes}-{spec.task}-e{episodes}"
        _record_once(record_dataset, path, spec, episodes, "node")
        uris.append(f"local:{path}")
    held = heldout_spec(tasks[0])
    path = root / f"heldout-{held.task}-e{heldout_episodes or episodes}"
    _record_once(record_dataset, path, held, heldout_episodes or episodes, "heldout")
    val = validation_spec(tasks[0])
    val_path = root / f"validation-{val.task}-e{heldout_episodes or episodes}"
    _record_once(record_dataset, val_path, val, heldout_episodes or episodes, "heldout")
    return Fixtures(uris, f"local:{path}", f"local:{val_path}")


def _record_once(record_dataset, path: Path, spec, episodes: int, split: str) -> None:
    """Record into a temporary folder and rename it when complete: a crash mid-recording leaves no dataset
    under the final name, so the next run records it again instead of loading half of it."""
    if path.exists():
        return
    log.info("recording %d expert episodes of %s for %s", episodes, spec.task, spec.name)
    tmp = path.with_name(path.name + ".partial")
    record_dataset(tmp, spec.repo_id, spec.task, episodes, spec.seed, spec.variation, split=split, overwrite=True)
    tmp.rename(path)
