"""Compile Solidity with the pinned npm solc (solcjs) through its standard-JSON interface.

Reproducible: the same sources and settings give the same bytecode, whoever runs the build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

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


class SolcError(RuntimeError):
    """The compiler reported errors (the message lists them)."""


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
