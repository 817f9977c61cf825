# The README's two commands: `make demo` and `make test`. Each sets itself up first.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export FLWR_TELEMETRY_ENABLED := 0
export MUJOCO_GL ?= egl

.PHONY: setup lock demo test test-unit test-integration lint contracts bench

setup:
	@bash scripts/setup.sh

# Re-resolve requirements.lock (the whole Python environment) after changing pyproject.toml's dependencies.
lock:
	$(PY) scripts/lock.py

demo: setup
	$(PY) -m aggregator.cli demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-integration: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m integration tests/integration

lint: setup
	$(PY) -m ruff check .
