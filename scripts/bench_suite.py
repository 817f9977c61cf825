"""The test suite's wall time, and how busy it keeps the machine's cores while it runs.

    .venv/bin/python scripts/bench_suite.py                    # what ``make test`` runs: pytest -q -n 2 --dist loadfile
    .venv/bin/python scripts/bench_suite.py --workers 3        # the same with three xdist workers
    .venv/bin/python scripts/bench_suite.py -- tests/unit      # extra pytest arguments after ``--``

Prints pytest's own summary line, the wall time, the cpu seconds every process of the machine spent meanwhile
(``/proc/stat``: the suite spawns anvil, Ray actors, EZKL children and CLI processes that ``time`` would not all
count, so the whole machine is measured; run it on an otherwise idle machine), the cores' mean utilization, the
share of seconds at most half busy (time the workers wait: polls, sleeps, subprocess start-up) and the load average
before and after. ``--durations=25`` (pyproject.toml) gives pytest's slowest steps in its output.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat's first line."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


class Utilization:
    """Samples the machine's busy share each second in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self.start = cpu_jiffies()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = cpu_jiffies()
        while not self._stop.wait(1.0):
            now = cpu_jiffies()
            total = now[1] - last[1]
            self.samples.append((now[0] - last[0]) / total if total else 0.0)
            last = now

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        busy, total = (b - a for a, b in zip(self.start, cpu_jiffies(), strict=True))
        tick = os.sysconf("SC_CLK_TCK")
        low = sum(s <= 0.5 for s in self.samples) / max(len(self.samples), 1)
        return {"cpu_s": busy / tick, "utilization": busy / total if total else 0.0, "half_idle_share": low}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (make test: 2)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(args.workers), "--dist", "loadfile", *args.pytest_args]
    load_before = os.getloadavg()
    print(f"$ {' '.join(cmd[2:])}   (load before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"{os.cpu_count()} cores)", flush=True)
    sampler = Utilization()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t0
    used = sampler.stop()
    sys.stdout.write(proc.stdout)
    summary = next((line for line in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)),
                   "(no pytest summary line)")
    load_after = os.getloadavg()
    print(f"\nsuite: {summary.strip('= ')}\n"
          f"wall {wall:.0f} s ({wall / 60:.1f} min), machine cpu {used['cpu_s']:.0f} s, cores busy "
          f"{used['utilization']:.0%} on average, at most half busy {used['half_idle_share']:.0%} of the seconds, "
          f"load after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
