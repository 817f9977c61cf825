"""Only pinned code runs on a node: with Flower's own install and load functions, a task that carries the pinned
bundle but reports the hash of an older bundle already installed under the node's Flower home would load the older
one; the guard refuses such a task before anything is installed or loaded."""

from __future__ import annotations

import sys

import pytest
from flwr.cli.build import build_fab_from_files
from flwr.cli.install import install_from_fab
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.serde import fab_from_proto, fab_to_proto
from flwr.supercore.fab import Fab

from node.app_guard import (
    HASHES_ENV,
    UntrustedApp,
    check_reported_run,
    guard,
    guard_reported_hash,
    guard_reported_run,
)
from node.trust import bundle_hash

FAB_ID, VERSION = "zk0/zk0", "0.1.0"  # both bundles: the same app, two releases


def bundle(module: str, marker: str) -> bytes:
    pyproject = ('[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
                 f'[project]\nname = "zk0"\nversion = "{VERSION}"\ndependencies = []\n\n'
                 '[tool.flwr.app]\npublisher = "zk0"\n\n'
                 f'[tool.flwr.app.components]\nserverapp = "{module}:app"\nclientapp = "{module}:app"\n\n'
                 '[tool.flwr.app.config]\nrounds = 1\n')
    code = f"from flwr.clientapp import ClientApp\n\napp = ClientApp()\napp.zk0_release = {marker!r}\n"
    fab, _ = build_fab_from_files({"pyproject.toml": pyproject.encode(), f"{module}.py": code.encode()})
    return fab


@pytest.fixture
def node_home(tmp_path, monkeypatch):
    """A node's Flower home where an older release, pinned once, is still installed; the newer one is pinned."""
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    old, new = bundle("zk0_old_release", "old"), bundle("zk0_new_release", "new")
    install_from_fab(old, skip_prompt=True)  # what a past run left under apps/
    monkeypatch.setenv(HASHES_ENV, bundle_hash(new))
    yield old, new
    for module in ("zk0_old_release", "zk0_new_release"):
        sys.modules.pop(module, None)


def task_fab(reported_hash: str, content: bytes):
    """The bundle of a task as a runtime receives it from its SuperNode (Flower's own protobuf round trip)."""
    return fab_to_proto(Fab(reported_hash, content, {}))


def test_flower_alone_loads_the_app_the_reported_hash_names(node_home):
    """Why the guard checks the reported hash: the pinned bytes pass the install check, and the old app runs."""
    old, new = node_home
    fab = fab_from_proto(task_fab(bundle_hash(old), new))
    guard(install_from_fab)(fab.content, skip_prompt=True)  # the bytes are the pinned bundle's: accepted
    app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(FAB_ID, VERSION, fab.hash_str)
    assert app.zk0_release == "old"


def test_a_task_reporting_another_hash_is_refused(node_home, capsys):
    old, new = node_home
    with pytest.raises(UntrustedApp, match=f"reports hash '{bundle_hash(old)}'"):
        guard_reported_hash(fab_from_proto)(task_fab(bundle_hash(old), new))
    assert "zk0 app guard: refused app bundle" in capsys.readouterr().err
    # the honest task: reported hash = its bytes' hash = the pinned one; Flower installs and loads exactly that app
    fab = guard_reported_hash(fab_from_proto)(task_fab(bundle_hash(new), new))
    guard(install_from_fab)(fab.content, skip_prompt=True)
    app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(FAB_ID, VERSION, fab.hash_str)
    assert app.zk0_release == "new"


@pytest.mark.parametrize("role", ["clientapp", "serverapp"])
def test_the_guard_script_protects_both_runtimes(node_home, monkeypatch, role):
    """What ``app_guard.py clientapp|serverapp`` patches is what Flower's runtime calls on a task's bundle."""
    import importlib

    from node.app_guard import ROLES, protect

    old, new = node_home
    runtime = importlib.import_module(ROLES[role][0])
    for name in ("install_from_fab", "fab_from_proto", "pull_task_input"):  # put back after the test
        if hasattr(runtime, name):
            monkeypatch.setattr(runtime, name, getattr(runtime, name))
    assert protect(role) is runtime
    with pytest.raises(UntrustedApp, match="reports hash"):
        runtime.fab_from_proto(task_fab(bundle_hash(old), new))
    with pytest.raises(UntrustedApp, match="refused app bundle sha256"):
        runtime.install_from_fab(old, skip_prompt=True)
    assert runtime.fab_from_proto(task_fab(bundle_hash(new), new)).content == new


def test_a_task_whose_run_names_another_app_folder_is_refused(node_home):
    """N10 (issue 30): the fab version the SuperLink reports is a path component of the folder Flower loads the
    ClientApp from; with the pinned bundle, a run reporting version "../../planted" loaded code planted outside
    the Flower home. The reported id and version must be the bundle's own."""
    from types import SimpleNamespace

    _, new = node_home
    fab = Fab(bundle_hash(new), new, {})
    check_reported_run(SimpleNamespace(fab_id=FAB_ID, fab_version=VERSION), fab)  # the honest task
    for fab_id, version in ((FAB_ID, "../../planted"), ("zk0/other", VERSION)):
        with pytest.raises(UntrustedApp, match="the task's run reports app"):
            check_reported_run(SimpleNamespace(fab_id=fab_id, fab_version=version), fab)
    # as the runtime meets it: pulling the task notes the refusal, installing its bundle raises it (so Flower,
    # which knows the task's message by then, replies with the error)
    pulled = guard_reported_run(lambda: ("message", "context", SimpleNamespace(fab_id=FAB_ID,
                                                                               fab_version="../../x"), fab))()
    assert pulled[0] == "message"
    with pytest.raises(UntrustedApp, match="the task's run reports app"):
        guard(install_from_fab)(new, skip_prompt=True)
