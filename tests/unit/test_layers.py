"""The map of docs/architecture.md holds: every zk0 folder imports only folders above it in the map.

Imports inside functions count too (the CLIs and tools import lazily): an upward import anywhere would let a
newcomer's change to the round reach into the operator's tools, or the node into the aggregator.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("prover", "contracts", "node", "sim", "attacks", "aggregator")
# docs/architecture.md's "Map", top to bottom; a layer imports only the layers before it
LAYERS = ["prover", "contracts", "node", "node.cli", "sim", "attacks", "aggregator.verifier", "aggregator.ledger",
          "aggregator.protocol", "aggregator", "aggregator.tools", "aggregator.explorer", "aggregator.cli"]
SUBPACKAGES = ("node.cli", *(layer for layer in LAYERS if layer.startswith("aggregator.")))


def layer_of(module: str) -> str:
    """The map's row of a dotted module name (``aggregator.protocol.gate`` → ``aggregator.protocol``)."""
    return next((sub for sub in SUBPACKAGES if module == sub or module.startswith(sub + ".")), module.split(".")[0])


def imported_modules(path: Path) -> set[str]:
    """Every absolute zk0 module ``path`` imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            rank = LAYERS.index(layer_of(module))
            for target in sorted(imported_modules(path)):
                if LAYERS.index(layer_of(target)) > rank:
                    found.append(f"{path.relative_to(root)} imports {target}")
    return found


def test_layer_of_names_the_maps_rows():
    assert layer_of("aggregator.protocol.gate") == "aggregator.protocol"
    assert layer_of("aggregator.server_app") == "aggregator"
    assert layer_of("node.cli.wallet") == "node.cli"
    assert layer_of("node.cliargs") == "node"  # a prefix of the name is not the subpackage
    assert layer_of("prover.hashing") == "prover"


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    fake = tmp_path / "aggregator" / "protocol"
    fake.mkdir(parents=True)
    (fake / "gate.py").write_text("def f():\n    from aggregator.tools.demo import run_demo\n")
    assert upward_imports(tmp_path) == ["aggregator/protocol/gate.py imports aggregator.tools.demo"]
