"""Offline fixtures for runs without the Hub: one non-IID dataset per node and the server's held-out set.

Built once under the cache directory and reused (a dataset folder with ``meta/info.json`` is complete: builders
write to a temporary name first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from node.synthetic import build_synthetic_dataset, held_out_spec, node_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fixtures:
    nodes: list[str]  # dataset URIs, one per node
    heldout: str


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
    return Fixtures(uris, f"local:{path}")
