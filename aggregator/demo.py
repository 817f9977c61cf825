"""``zk0agg demo``: a whole federation on one machine with Flower's simulation engine and offline fixtures."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from aggregator.config import FederationConfig
from aggregator.fixtures import synthetic_fixtures
from aggregator.server_app import make_server_app
from node.client_app import NodeSetup, make_client_app
from node.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    nodes: int = 3
    rounds: int = 3
    out: str = ""
    cache_dir: str = ".zk0/fixtures"
    episodes: int = 4
    frames: int = 30

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise UserError("a demo needs at least one node")
        self.out = self.out or time.strftime("outputs/demo-%Y%m%d-%H%M%S")


def run_demo(demo: DemoConfig, fed: FederationConfig | None = None, console: Console | None = None) -> dict:
    """Build fixtures, run ``demo.rounds`` rounds of ``demo.nodes`` nodes in simulation; return the summary."""
    from flwr.simulation import run_simulation

    console = console or Console()
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    console.print(f"[bold]zk0 demo[/]: {demo.nodes} nodes, {demo.rounds} rounds, outputs in {demo.out}")
    fixtures = synthetic_fixtures(Path(demo.cache_dir), demo.nodes, demo.episodes, demo.frames)
    console.print(f"fixtures ready ({time.perf_counter() - t0:.1f}s): {len(fixtures.nodes)} node datasets + held-out")
    fed = fed or FederationConfig()
    fed.rounds, fed.out_dir, fed.cache_dir, fed.heldout = demo.rounds, demo.out, demo.cache_dir, fixtures.heldout
    fed.min_nodes = demo.nodes
    setups = [NodeSetup(dataset=uri, cache_dir=demo.cache_dir) for uri in fixtures.nodes]
    client_app = make_client_app(lambda ctx: setups[int(ctx.node_config["partition-id"])])
    summary: dict = {}

    server_app = make_server_app(fed, console=console)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=demo.nodes,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": max(1, min(os.cpu_count() or 1, demo.nodes))}})
    summary_path = Path(demo.out) / "summary.json"
    if summary_path.exists():
        import json

        summary = json.loads(summary_path.read_text())
    console.print(f"demo finished in {time.perf_counter() - t0:.0f}s: {summary_path}")
    return summary
