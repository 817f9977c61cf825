"""Locate the npm tools pinned in the repo's package.json (anvil, solc), installed by `make setup`."""

from __future__ import annotations

import os
from pathlib import Path

ANVIL = "@foundry-rs/anvil-linux-amd64/bin/anvil"
SOLC = "solc/package.json"


class ToolNotFound(RuntimeError):
    """A pinned npm tool is not installed."""


def node_modules_dirs() -> list[Path]:
    """Candidate node_modules folders: $ZK0_NODE_MODULES, then those above this package and above the cwd."""
    found: list[Path] = []
    if env := os.environ.get("ZK0_NODE_MODULES"):
        found.append(Path(env))
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "node_modules").is_dir() and folder / "node_modules" not in found:
                found.append(folder / "node_modules")
    return found


def find_npm_tool(relative: str) -> Path:
    """Path of `relative` inside the first node_modules that has it; ToolNotFound says how to install it."""
    for folder in node_modules_dirs():
        if (folder / relative).exists():
            return folder / relative
    name = relative.split("/bin/")[-1].split("/")[0]
    raise ToolNotFound(f"{name} is not installed (looked for node_modules/{relative}): run `make setup`")
