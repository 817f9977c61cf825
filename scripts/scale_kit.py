"""What the scale benchmarks share: where results go, the model sizes, per-phase peak memory and a reply message as a
node sends it (``scripts/bench_scale.py`` and ``scripts/bench_scale_real.py``)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".zk0" / "scale"
TINY_D, REAL_D = 194_976, 99_880_992  # trainable parameters: tiny SmolVLA, full-size SmolVLA (docs/benchmarks.md)


class RssSampler:
    """Peak resident memory per phase of a run, sampled every 20 ms from /proc (ru_maxrss has only the overall peak)."""

    def __init__(self) -> None:
        import threading

        self.phase, self.peaks, self._stop = "start", {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {k: round(v) for k, v in self.peaks.items()}


def load_average() -> float:
    return os.getloadavg()[0]


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_result(path: Path, key: str, value: dict) -> None:
    data = read_results(path)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    data[key] = {**value, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "load": round(load_average(), 1),
                 "commit": commit.strip()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(json.dumps({key: data[key]}, indent=1))


def reply_message(node_id: int, arrays: dict, contribution: dict | None = None):
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from node.params import pack

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 0, node_id  # outside a Flower runtime
    content = RecordDict({**pack(arrays),
                          "metrics": MetricRecord({"num-examples": 10, "train_loss": 1.0})})
    if contribution is not None:
        content["contribution"] = ConfigRecord(contribution)
    return Message(content, dst_node_id=0, message_type="train")
