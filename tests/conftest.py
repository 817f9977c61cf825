"""Shared test set-up: offline Hub, no telemetry, and small real fixtures built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SVT_LOG", "1")

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)


# ``make test`` runs the suite on two workers (pytest-xdist, ``--dist loadfile``): each test module runs whole on
# one worker, so its module fixtures are built once; these modules share a session fixture and run on one worker
# together, so it is built once too (a verified federation costs minutes).
SHARED_FIXTURES = {
    "verified-run": ("tests/integration/test_explorer.py", "tests/integration/test_release.py",
                     "tests/integration/test_verified_federation.py"),
    "service-circuit": ("tests/integration/test_verifier_service.py", "tests/integration/test_verifier_api_fuzz.py"),
}
LONGEST_FIRST = ("tests/integration/test_deployment.py", "verified-run", "tests/integration/test_faults.py",
                 "tests/integration/test_lora.py")


def work_unit(nodeid: str) -> str:
    """What one worker runs whole: the test's module, or the name of the module group it shares a fixture with."""
    module = nodeid.split("::", 1)[0]
    return next((name for name, modules in SHARED_FIXTURES.items() if module in modules), module)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration is marked ``integration`` (so ``-m 'not integration'`` is fast); the
    longest work units go first, so that the workers finish together."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with ``SHARED_FIXTURES``' modules together, in the collection's order."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order (xdist would sort by number of tests)
    return ByWorkUnit(config, log)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One fixtures folder per test session: tiny SmolVLM tokenizer/config and datasets are built once. Under
    pytest-xdist the circuits and dev SRSs are shared by the workers too (a circuit costs tens of cpu seconds;
    ``prover.build_lock`` makes a worker wait for the other's build instead of repeating it)."""
    cache = tmp_path_factory.mktemp("zk0-cache")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "zk0-circuits"  # the run's folder, above each worker's
        for sub in ("srs", "specs", "circuits"):
            (shared / sub).mkdir(parents=True, exist_ok=True)
            (cache / sub).symlink_to(shared / sub, target_is_directory=True)
    return cache


@pytest.fixture(scope="session")
def synthetic(cache_dir):
    """Three small synthetic node datasets and a held-out set (real LeRobot v3 format, video cameras)."""
    from aggregator.tools.fixtures import synthetic_fixtures

    return synthetic_fixtures(cache_dir, n_nodes=3, episodes=2, frames=24)


@pytest.fixture(scope="session")
def tiny_circuit(tmp_path_factory):
    """A tiny real EZKL circuit with its reusable EVM verifier, VKA and one proof (contracts/testing.py)."""
    from contracts.testing import make_tiny_circuit

    return make_tiny_circuit(tmp_path_factory.mktemp("tiny-circuit"))


def _tree_status() -> set[str] | None:
    """``git status --porcelain`` of the source tree (None outside a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def tree_stays_clean():
    """Tests write into temporary folders only: the source tree's git status is the same after the session
    (a dirty tree would change the app bundle's hash that nodes pin)."""
    before = _tree_status()
    yield
    after = _tree_status()
    if before is not None and after is not None:
        assert sorted(after - before) == [], "the tests wrote into the source tree"
