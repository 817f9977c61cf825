"""requirements.lock matches pyproject.toml: a dependency changed without a refresh of the lock fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lock.py"


def check(pyproject: Path = ROOT / "pyproject.toml", lock: Path = ROOT / "requirements.lock"):
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--pyproject", str(pyproject), "--lock", str(lock)],
                          capture_output=True, text=True, timeout=60)


def test_the_lock_matches_pyproject():
    result = check()
    assert result.returncode == 0, result.stderr


def test_the_lock_pins_every_package_with_hashes():
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pinned = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert len(pinned) > 100  # the whole environment (torch, lerobot, flwr, ...), not only the direct dependencies
    for i, line in enumerate(lines):
        if line in pinned:
            assert "==" in line, f"not pinned: {line}"
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"no hash: {line}"


def test_a_changed_dependency_fails_the_check(tmp_path):
    pyproject = (ROOT / "pyproject.toml").read_text()
    added = tmp_path / "added.toml"
    added.write_text(pyproject.replace('"psutil",', '"psutil",\n    "left-pad==1.0",'))
    result = check(pyproject=added)
    assert result.returncode != 0
    assert "left-pad==1.0" in result.stderr and "scripts/lock.py" in result.stderr

    repinned = tmp_path / "repinned.toml"
    repinned.write_text(pyproject.replace('"web3==8.0.0"', '"web3==7.0.0"'))
    result = check(pyproject=repinned)
    assert result.returncode != 0 and "web3" in result.stderr


def test_a_hand_edited_pin_fails_the_check(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text((ROOT / "requirements.lock").read_text().replace("\nezkl==23.0.5 ", "\nezkl==23.0.4 "))
    result = check(lock=lock)
    assert result.returncode != 0 and "ezkl: pyproject.toml asks for ==23.0.5, the lock pins 23.0.4" in result.stderr
