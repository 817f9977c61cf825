"""The app bundle's hash depends only on the source git tracks: what set-up, tests and runs leave in the tree
(untracked files, __pycache__, *.egg-info, node_modules, outputs, .zk0) never changes what nodes pin."""

from __future__ import annotations

import subprocess

from node.trust import SOURCE_ROOT, build_app_bundle, bundle_hash, collect_app_files, tracked_files

PYPROJECT = ('[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
             '[project]\nname = "zk0"\nversion = "0.1.0"\ndependencies = []\n\n'
             '[tool.flwr.app]\npublisher = "zk0"\n\n'
             '[tool.flwr.app.components]\nserverapp = "pkg.mod:app"\nclientapp = "pkg.mod:app"\n\n'
             '[tool.flwr.app.config]\nrounds = 3\n')


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_bundle_hash_ignores_what_is_not_committed(tmp_path):
    app = tmp_path / "zk0app"
    (app / "pkg").mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "mod.py").write_text("X = 1\n")
    (app / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    git(app, "init", "-q")
    git(app, "add", ".")
    git(app, "commit", "-qm", "app")
    clean = bundle_hash(build_app_bundle(app))
    # what a set-up, a test run or a demo leaves behind; no .gitignore here, so only git's index tells them apart
    for name, text in {"pkg/__pycache__/mod.cpython-312.py": "cached", "zk0.egg-info/PKG-INFO.md": "x",
                       "node_modules/anvil/package.json": "{}", "outputs/run/summary.json": "{}",
                       ".zk0/fixtures/meta.json": "{}", "pkg/scratch.py": "Y = 2\n", "notes.md": "todo"}.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    assert bundle_hash(build_app_bundle(app)) == clean
    (app / "pkg" / "mod.py").write_text("X = 2\n")  # a change to committed code is another app
    assert bundle_hash(build_app_bundle(app)) != clean


def test_this_tree_bundles_its_tracked_files_only():
    files = collect_app_files(SOURCE_ROOT)
    tracked = tracked_files(SOURCE_ROOT)
    if tracked is None:  # an unpacked source archive: nothing to compare with
        return
    assert set(files) == set(tracked)
    assert not [name for name in files if name.startswith(("node_modules/", "outputs/", ".zk0/", ".venv/"))
                or "__pycache__" in name or ".egg-info" in name]
