#!/usr/bin/env bash
# One-time set-up of a fresh checkout: a Python 3.12 venv with zk0 and its stack, and the npm chain tools.
# Idempotent: re-runs only the steps whose inputs changed (stamps under .venv/ and node_modules/).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
  for c in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python" /usr/bin/python3.12 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  echo "zk0 needs Python 3.12 (LeRobot 0.6 requires it); none found. Install it (e.g. 'pyenv install 3.12')." >&2
  return 1
}

# The Python environment is requirements.lock, whole and exact (scripts/lock.py writes it; refresh it with
# `.venv/bin/python scripts/lock.py` after changing pyproject.toml's dependencies).
stamp=.venv/.zk0-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || [ scripts/setup.sh -nt "$stamp" ]; then
  py=$(find_python312)
  "$py" scripts/lock.py --check  # a dependency changed without a refresh of the lock: say so before installing
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  echo "[setup] installing the locked Python stack into .venv (first time: about a minute)"
  uv_pin=$(sed -n 's/^\(uv==[^ ;\\]*\).*/\1/p' requirements.lock)  # the installer is pinned by the lock too
  .venv/bin/python -m pip install -q "$uv_pin" 2>&1 | grep -v "is ignored" || true
  # Exactly the lock: every package at its pinned version and hash, nothing else (sync removes strays).
  .venv/bin/python -m uv pip sync -q --python .venv/bin/python --require-hashes requirements.lock
  .venv/bin/python -m uv pip install -q --python .venv/bin/python --no-deps -e .  # zk0 itself, editable
  .venv/bin/python -c "import lerobot, flwr, ezkl, web3" # fail loudly if the install is incomplete
  touch "$stamp"
fi

if [ ! -f node_modules/.zk0-installed ] || [ package.json -nt node_modules/.zk0-installed ] || [ package-lock.json -nt node_modules/.zk0-installed ]; then
  echo "[setup] installing pinned npm tools (anvil, solc) into node_modules"
  npm ci --no-audit --no-fund --loglevel=error  # the committed lock, never rewritten (the app bundle hashes it)
  touch node_modules/.zk0-installed
fi

# Headless Chromium for the explorer's browser tests (tests/integration/test_explorer.py skips without it).
# Installed only where it is missing and we are root with apt; anywhere else this step quietly does nothing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing Debian's chromium (headless browser for the explorer tests)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[setup] could not install chromium: the explorer's browser tests will be skipped"
fi
