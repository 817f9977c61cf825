"""Compile Solidity with the pinned npm solc (solcjs) through its standard-JSON interface.

Reproducible: the same sources and settings give the same bytecode, whoever runs the build.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

from contracts.npm import SOLC, ToolNotFound, find_npm_tool

SOLC_VERSION = "0.8.28"

# Fixed compiler settings: change them only together with a rebuild of every artifact.
SETTINGS: dict = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

# Standard-JSON in on stdin, standard-JSON out on stdout (plus the compiler's version).
_NODE_SCRIPT = """
const solc = require("solc");
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const output = JSON.parse(solc.compile(input));
  output.solcVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
"""


_IMPORT = re.compile(r"""^\s*import\s+(?:[^;"']*?\s+from\s+)?["']([^"']+)["']\s*;""", re.MULTILINE)


class SolcError(RuntimeError):
    """The compiler reported errors (the message lists them)."""


def source_path(name: str, source_dir: Path) -> Path:
    """Where source unit `name` lives: an npm package's file (e.g. "@openzeppelin/contracts/...", from the
    pinned node_modules) or a file of `source_dir`."""
    if name.startswith("@"):
        return find_npm_tool(name)
    return source_dir / name


def collect_sources(names: list[str], source_dir: Path) -> dict[str, str]:
    """{source unit name: text} of `names` and everything they import, transitively.

    Local sources are named by their path in `source_dir`; npm imports keep their package path, and relative
    imports inside a package resolve against the importing unit (as solc's own import callback would).
    """
    sources: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        path = source_path(name, source_dir)
        if not path.is_file():
            raise SolcError(f"source {name!r} not found (looked at {path})")
        sources[name] = path.read_text()
        for target in _IMPORT.findall(sources[name]):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            pending.append(target)
    return sources


def compile_standard(sources: dict[str, str], settings: dict | None = None) -> dict:
    """Compile {source name: Solidity text}; return solc's standard-JSON output (plus `solcVersion`).

    Raises SolcError on compile errors, ToolNotFound when node or the npm solc is missing.
    """
    node = shutil.which("node")
    if node is None:
        raise ToolNotFound("node is not installed: the pinned solc is an npm package (run `make setup`)")
    node_modules = find_npm_tool(SOLC).parents[1]
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": settings or SETTINGS,
    }
    done = subprocess.run(
        [node, "-e", _NODE_SCRIPT],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )
    if done.returncode != 0:
        raise SolcError(f"solc failed: {done.stderr.strip()[-2000:]}")
    output = json.loads(done.stdout)
    if not output["solcVersion"].startswith(SOLC_VERSION):
        raise SolcError(f"expected solc {SOLC_VERSION}, node_modules has {output['solcVersion']}: run `make setup`")
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise SolcError("\n".join(errors))
    return output
