"""Operator-only settings: endpoints and trust decisions that come from the aggregator's operator, never from a run.

Whoever reaches the SuperLink's Control API chooses a run's config (``[tool.flwr.app.config]``), and Flower sends
that config to every node. So a run chooses only the learning (model, rounds, local steps, rates, Krum...); where
the ServerApp sends the verifier token, which chain it signs for, whether it verifies, which SRS it trusts and
where it writes on this machine are the operator's (``OPERATOR_KEYS``). They reach the ServerApp in two files on
the aggregator's machine, never over the network:

- ``operator.json``, written by ``zk0agg start`` (``LoopbackFederation`` on loopback), whose path is in the
  SuperLink's environment (``ZK0_OPERATOR_FILE``), inherited by every ServerApp process: the chain, registry,
  verifier, SRS, cache and the folder where runs write (``outputs``);
- ``runs/<flower run id>.json`` beside it, written by ``zk0agg run`` right after it submitted the run: that run's
  output folder, ``--resume``, ``--no-verify``, ``--srs``, ``--cache-dir``. A run submitted by anyone else gets no
  such file: it writes to ``<outputs>/flwr-run-<id>`` with the operator's defaults.

``FederationConfig.from_run_config`` refuses a run config that names any of these keys.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from node.errors import UserError

log = logging.getLogger(__name__)

OPERATOR_FILE_ENV = "ZK0_OPERATOR_FILE"
# FederationConfig fields a run may not choose: endpoints, trust decisions, paths on the aggregator's machine
OPERATOR_KEYS = ("chain_rpc", "registry", "verifier_url", "verify", "onchain_verify", "srs", "out_dir", "resume",
                 "cache_dir", "validation")  # validation: the data that judges the nodes (protocol/validation.py)
RUN_FILE_WAIT = 30.0  # seconds a ServerApp waits for zk0agg run's file of its run (written just after submission)


def write_json_private(path: Path, data: dict) -> None:
    """``data`` as JSON, readable by this user only (written whole, then renamed: a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def check_settings(settings: dict, source: str) -> dict:
    """Only ``OPERATOR_KEYS`` (and ``outputs``), snake_case: a typo in an operator file is an error, not a default."""
    unknown = sorted(set(settings) - {*OPERATOR_KEYS, "outputs"})
    if unknown:
        raise UserError(f"{source}: unknown operator setting(s) {', '.join(unknown)}; known: "
                        f"{', '.join([*OPERATOR_KEYS, 'outputs'])}")
    return settings


def write_operator_file(path: Path, settings: dict) -> Path:
    """``zk0agg start``'s settings for every run of its SuperLink (``outputs``: the folder runs write under)."""
    write_json_private(path, check_settings(dict(settings), str(path)))
    return path


def run_file(operator_file: Path, run_id: int) -> Path:
    return Path(operator_file).parent / "runs" / f"{int(run_id)}.json"


def write_run_settings(operator_file: Path, run_id: int, settings: dict) -> Path:
    """``zk0agg run``'s settings for its own run ``run_id`` (out_dir, resume, verify, srs, cache_dir)."""
    path = run_file(operator_file, run_id)
    write_json_private(path, check_settings(dict(settings), str(path)))
    return path


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read the operator settings {path}: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"the operator settings {path} are not a JSON object")
    return check_settings(data, str(path))


def operator_settings(run_id: int, environ: dict | None = None, wait: float = RUN_FILE_WAIT) -> dict:
    """The operator's settings for Flower run ``run_id``, as ``FederationConfig`` fields.

    Without ``ZK0_OPERATOR_FILE`` in the environment there are none (the dataclass defaults: an unverified run in
    ``outputs/run``). ``runs/<run_id>.json`` is waited for up to ``wait`` seconds, since ``zk0agg run`` writes it
    only once the SuperLink has given the run its id.
    """
    environ = os.environ if environ is None else environ
    if not environ.get(OPERATOR_FILE_ENV):
        return {}
    path = Path(environ[OPERATOR_FILE_ENV])
    settings = _read(path)
    per_run, deadline = run_file(path, run_id), time.monotonic() + wait
    while not per_run.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    outputs = settings.pop("outputs", "") or "outputs"
    if per_run.exists():
        settings.update({k: v for k, v in _read(per_run).items() if k != "outputs"})
    else:
        log.warning("run %d: no settings of zk0agg run (%s); the operator's defaults, outputs in %s", run_id,
                    per_run, outputs)
    settings.setdefault("out_dir", str(Path(outputs) / f"flwr-run-{int(run_id)}"))
    return settings
