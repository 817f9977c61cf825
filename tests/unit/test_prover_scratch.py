"""Scratch folders of killed provers are swept; a live process's are kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from prover.ezkl_process import call, scratch_dir, sweep_scratch


def test_folders_of_dead_processes_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    gone = tmp_path / f"zk0-prove-{int(dead.stdout)}-abc"
    live = tmp_path / f"zk0-prove-{os.getpid()}-def"
    other = tmp_path / "zk0-other-1-x"
    for path in (gone, live, other):
        (path / "sub").mkdir(parents=True)
    assert sweep_scratch(tmp_path) == 1
    assert not gone.exists() and live.exists() and other.exists()


def test_scratch_dir_is_named_after_this_process_and_removed_after():
    with scratch_dir("prove") as work:
        assert work.name.startswith(f"zk0-prove-{os.getpid()}-") and work.is_dir()
    assert not work.exists()


def test_only_the_long_calls_go_to_a_child():
    with pytest.raises(ValueError, match="not one of the calls"):
        call("verify", "a", "b")
