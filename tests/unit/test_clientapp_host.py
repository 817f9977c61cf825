"""The warm ClientApp host (node.app_guard): a launcher hands its task over and gets the task's exit code back; the
task runs Flower's real ``flwr-clientapp`` entry behind the guard, in a process forked by the host, with the
launcher's own arguments and stdout/stderr. Without a host the launcher runs the task itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_a_host_whose_parent_died_while_it_preloaded_ends(tmp_path):
    """The host watches the parent it had when it started, not the one it has once preloaded: a parent that died
    meanwhile (a SuperNode that gave up connecting) would otherwise be init's pid, awaited forever (issue 34)."""
    import psutil

    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(5)\n")
    sock = tmp_path / "h.sock"  # bound before the preload: the parent exits once it is there
    serve = f"import runpy; runpy.run_path({str(GUARD)!r})['serve']({str(sock)!r}, ('slow_import',))"
    parent = (f"import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-P', '-c', {serve!r}], "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); t = time.monotonic()\n"
              f"while not os.path.exists({str(sock)!r}) and time.monotonic() < t + 60: time.sleep(0.05)\n"
              "print(p.pid)")
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    host = psutil.Process(int(result.stdout))
    try:
        _, alive = psutil.wait_procs([host], timeout=120)
        assert not alive, "the host outlived its parent"
    finally:
        with contextlib.suppress(psutil.Error):
            host.kill()


def test_node_processes_stop_and_reap_children_and_their_orphans():
    """``NodeProcesses`` (what ``zk0node start`` becomes): a child that dies leaves its own child to us (subreaper),
    and leaving the block ends and reaps both."""
    import psutil

    from node.supervise import NodeProcesses

    sleeper = "import time; time.sleep(600)"
    spawner = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {sleeper!r}]); {sleeper}"
    with NodeProcesses(grace=5.0) as processes:
        child = processes.spawn([sys.executable, "-c", spawner])
        deadline = time.monotonic() + 60
        while not psutil.Process(child.pid).children():
            assert time.monotonic() < deadline, "the grandchild did not start"
            time.sleep(0.1)
        grandchild = psutil.Process(child.pid).children()[0]
        assert os.getpgid(grandchild.pid) == child.pid  # the child leads a group its own children join
        child.kill()
        deadline = time.monotonic() + 30
        while grandchild.ppid() != os.getpid():
            assert time.monotonic() < deadline, f"the orphan went to {grandchild.ppid()}, not to its owner"
            time.sleep(0.1)
    assert not grandchild.is_running() and child.poll() is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(grandchild.pid, os.WNOHANG)  # reaped, not a zombie left for later


def test_node_processes_children_die_with_a_killed_owner(tmp_path):
    """SIGKILL of ``zk0node start`` (no clean-up can run) still ends what it started (PR_SET_PDEATHSIG)."""
    import psutil

    owner = ("import sys, time; from node.supervise import NodeProcesses; p = NodeProcesses().__enter__(); "
             "print(p.spawn([sys.executable, '-c', 'import time; time.sleep(600)']).pid, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = psutil.Process(int(proc.stdout.readline()))
        proc.kill()
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs([child], timeout=30)
        assert not alive, "the child outlived its SIGKILLed owner"
    finally:
        proc.kill()
        if child is not None:
            with contextlib.suppress(psutil.Error):
                child.kill()


def test_the_warm_host_is_off_where_its_socket_path_would_be_too_long(tmp_path):
    """A Unix socket's path has a limit (108 bytes on Linux): under a deep --state-dir the node runs without the
    warm host (``zk0node start`` says so in its banner) instead of failing to bind."""
    from node.supernode import SuperNodeOptions

    def options(state_dir: Path) -> SuperNodeOptions:
        return SuperNodeOptions(superlink="127.0.0.1:9092", dataset="local:x", wallet=tmp_path / "w.json",
                                app_hashes=["ab" * 32], state_dir=state_dir, insecure=True)

    short, deep = Path("/tmp/zk0-n"), tmp_path / ("d" * 100)
    assert options(short).host_socket == short / "clientapp-host.sock"
    assert options(short).host_command()[-1] == str(short / "clientapp-host.sock")
    assert options(deep).host_socket is None and options(deep).host_command() is None
    assert HOST_ENV not in options(deep).environment("pw", base={})
