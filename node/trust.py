"""Which app code a node runs: the zk0 app bundle (Flower FAB) and its hash.

In the deployment engine the aggregator sends the app's code to every node in a FAB. A node operator reviews a
zk0 source tree, builds the same bundle from it (``zk0node app-hash DIR``) and pins that hash
(``zk0node start --app-hash``); ``node.app_guard`` then refuses every other bundle before any of its code runs.

The bundle is Flower's own (``flwr.cli.build.build_fab_from_files``: fixed file dates, sorted paths), so its hash
equals ``sha256`` of ``flwr build`` in a clean checkout: two people with the same commit get the same hash. In a git
checkout only the files git tracks go in (``git ls-files``, with their bytes in the tree): what set-up, tests and
runs leave behind (untracked files, ``__pycache__``, ``*.egg-info``, ``node_modules``, ``outputs``) never changes
the hash. Elsewhere (an unpacked source archive) we collect the files as Flower does, only faster, by not walking
into folders ``.gitignore`` ignores (``.venv`` alone holds 5 GB).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import warnings
from pathlib import Path

from node.errors import UserError

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the zk0 tree this node runs from (a source checkout)


def tracked_files(root: Path) -> dict[str, Path] | None:
    """The files git tracks in ``root`` when ``root`` is the top of a git checkout; None otherwise."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.decode().strip()).resolve() != root:
            return None
        listed = git("ls-files", "-z", "--cached")
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine: not a checkout we can read
        return None
    if listed.returncode != 0:
        return None
    files = {}
    for name in filter(None, listed.stdout.decode().split("\0")):
        path = root / name
        if path.is_file() and not path.is_symlink():  # a tracked file deleted in the tree is not in the app
            files[name] = path
    return files


def collect_app_files(app_dir: Path) -> dict[str, Path]:
    """The app's files: git's tracked files in a checkout, else ``flwr.cli.utils.collect_files`` without
    descending into git-ignored folders (their files are ignored)."""
    from flwr.cli.utils import build_pathspec, load_gitignore_patterns

    root = Path(app_dir).expanduser().resolve()
    tracked = tracked_files(root)
    if tracked is not None:
        return tracked
    gitignore = root / ".gitignore"
    patterns = load_gitignore_patterns(gitignore) if gitignore.is_file() else []
    with warnings.catch_warnings():  # pathspec deprecates the pattern factory Flower itself uses
        warnings.simplefilter("ignore", DeprecationWarning)
        prune = build_pathspec(patterns) if not any(p.lstrip().startswith("!") for p in patterns) else None
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        if prune is not None:
            dirnames[:] = [d for d in dirnames if not prune.match_file((rel_dir / d).as_posix() + "/")]
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_symlink() or not path.resolve().is_relative_to(root):
                continue
            files[(rel_dir / filename).as_posix()] = path
    return files


def build_app_bundle(app_dir: Path | str = SOURCE_ROOT) -> bytes:
    """The FAB of the zk0 app in ``app_dir``: what ``zk0agg run`` submits and what ``--app-hash`` pins."""
    from flwr.cli.build import build_fab_from_files

    app_dir = Path(app_dir).expanduser().resolve()
    if not (app_dir / "pyproject.toml").is_file():
        raise UserError(f"{app_dir} is not a zk0 source tree (no pyproject.toml)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fab, _ = build_fab_from_files(collect_app_files(app_dir))
    except ValueError as err:
        raise UserError(f"cannot bundle the app in {app_dir}: {err}") from None
    return fab


def bundle_hash(fab: bytes) -> str:
    """Flower's FAB hash: sha256 of the bundle's bytes, hex."""
    return hashlib.sha256(fab).hexdigest()


def app_hash(app_dir: Path | str = SOURCE_ROOT) -> str:
    return bundle_hash(build_app_bundle(app_dir))


def parse_app_hash(value: str) -> str:
    """A pinned hash as given on the command line: 64 hex digits, optional 0x."""
    digest = value.strip().lower().removeprefix("0x")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UserError(f"bad --app-hash {value!r}: expected the bundle's sha256 (64 hex digits; "
                        "zk0node app-hash DIR prints it)")
    return digest
