"""The warm ClientApp host (node.app_guard): a launcher hands its task over and gets the task's exit code back; the
task runs Flower's real ``flwr-clientapp`` entry behind the guard, in a process forked by the host, with the
launcher's own arguments and stdout/stderr. Without a host the launcher runs the task itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from node.app_guard import HASHES_ENV, HOST_ENV
from node.supernode import GUARD


@pytest.fixture
def host(tmp_path):
    """A host that preloads only Flower's ClientApp runtime (the real one imports torch & co.: seconds)."""
    sock = tmp_path / "host.sock"
    code = (f"import runpy; runpy.run_path({str(GUARD)!r})['serve']({str(sock)!r}, modules=())")
    proc = subprocess.Popen([sys.executable, "-P", "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the host did not start"
        time.sleep(0.1)
    yield sock, proc
    proc.terminate()
    proc.wait(timeout=10)


def launcher(*args: str, sock=None) -> subprocess.CompletedProcess:
    env = {**os.environ, HASHES_ENV: "ab" * 32}
    env.pop(HOST_ENV, None)
    if sock is not None:
        env[HOST_ENV] = str(sock)
    return subprocess.run([sys.executable, "-P", str(GUARD), "clientapp", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_a_task_handed_to_the_host_runs_flowers_clientapp_there(host):
    sock, proc = host
    ok = launcher("--help", sock=sock)
    assert ok.returncode == 0, ok.stderr
    assert "--clientappio-api-address" in ok.stdout or "--runtime-api-address" in ok.stdout  # Flower's own usage
    bad = launcher("--token", "t", "--no-such-flag", sock=sock)
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr  # the launcher's stderr
    proc.terminate()
    host_log = proc.communicate(timeout=10)[1]
    assert host_log.count("zk0 clientapp host: task process") == 2, host_log  # both ran in forked children


def test_without_a_host_the_launcher_runs_the_task_itself(tmp_path):
    result = launcher("--token", "t", "--no-such-flag", sock=tmp_path / "nobody-listens.sock")
    assert result.returncode == 2 and "unrecognized arguments: --no-such-flag" in result.stderr
