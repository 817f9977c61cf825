#!/usr/bin/env bash
# Static analysis of contracts/src (ContributionRegistry.sol and what it imports) with slither, compiled by the
# project's pinned solcjs 0.8.28 (node_modules). Prints the findings; they are for people to review, not a gate:
# the exit status is nonzero only when the set-up or the compilation fails.
#   scripts/slither.sh                     # findings as text
#   scripts/slither.sh --json out.json     # extra arguments go to slither
# Slither lives in its own venv (SLITHER_VENV, default /work/slither-venv), never in the project's .venv.
# solc-select cannot download native compilers here, so slither is given a small `solc` stand-in that answers
# --version and --standard-json with the npm solc module (optimizer on, runs 200, evm cancun: solc.py's settings).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SLITHER_VENV:-/work/slither-venv}
pins="slither-analyzer==0.11.6 crytic-compile==0.4.2"

[ -f node_modules/solc/package.json ] || { echo "no node_modules/solc: run scripts/setup.sh first" >&2; exit 1; }
if [ "$("$venv/bin/slither" --version 2>/dev/null)" != "0.11.6" ]; then
  echo "[slither] installing $pins into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q $pins 2>&1 | grep -v "is ignored" >&2 || true
  [ "$("$venv/bin/slither" --version 2>/dev/null)" = "0.11.6" ] || { echo "slither install failed" >&2; exit 1; }
fi

cat >"$venv/bin/solc-zk0" <<'EOF'
#!/usr/bin/env node
// A solc command line over the pinned npm solc, enough for crytic-compile: --version and --standard-json.
const fs = require("fs"), path = require("path");
const nodeModules = process.env.ZK0_NODE_MODULES;
const solc = require(path.join(nodeModules, "solc"));
if (!solc.version().startsWith("0.8.28+")) { console.error("expected solc 0.8.28, got " + solc.version()); process.exit(1); }
const args = process.argv.slice(2);
if (args.includes("--version")) {
  console.log("solc, the solidity compiler commandline interface\nVersion: " + solc.version());
} else if (args.includes("--standard-json")) {
  const findImports = (name) => {  // local sources by repo path, "@openzeppelin/..." from node_modules
    for (const root of [process.cwd(), nodeModules]) {
      const file = path.resolve(root, name);
      if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
    }
    return { error: "not found: " + name };
  };
  process.stdout.write(solc.compile(fs.readFileSync(0, "utf8"), { import: findImports }));
} else {
  console.error("solc-zk0 answers only --version and --standard-json"); process.exit(2);
}
EOF
chmod +x "$venv/bin/solc-zk0"

# All of contracts/src as one standard-JSON compilation; findings inside OpenZeppelin are left out.
ZK0_NODE_MODULES="$PWD/node_modules" exec "$venv/bin/slither" contracts/src \
  --solc "$venv/bin/solc-zk0" --solc-standard-json --solc-args=--optimize \
  --filter-paths node_modules --fail-none "$@"
