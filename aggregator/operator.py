"""Operator-only settings: endpoints, trust decisions and verdict rules that come from the aggregator's operator, never
from a run's submitter.

Flower 1.41's Control API has no login: whoever reaches it can submit a run and choose its run config
(``[tool.flwr.app.config]``), which Flower also sends to every node. So a run config chooses only the learning
(model, local steps, rates, evaluation...). The operator decides, in files on the aggregator's machine that never
travel over the network (``OPERATOR_KEYS``):

- where the ServerApp sends the verifier token, which chain it signs for, whether it verifies, which SRS it trusts,
  the validation set and where it writes on this machine (``ENDPOINT_KEYS``);
- every setting that decides verdicts or rewards (``VERDICT_KEYS``): the gate's tolerances, min-gain, the selection
  rule, Krum's f and m, min-nodes and the number of rounds (each round the registry opens pays the round's
  emission and advances every unstake clock; the emission itself is a registry parameter, ``zk0agg params``), and
  the server optimizer's step along the verified mean (``server_*``: it decides how far what is averaged moves the
  global model).

They reach the ServerApp in two files (0600, in the 0700 state folder of ``zk0agg start``):

- ``operator.json``, written by ``zk0agg start`` (``LoopbackFederation`` on loopback), whose path is in the
  SuperLink's environment (``ZK0_OPERATOR_FILE``), inherited by every ServerApp process: chain, registry, verifier,
  validation set;
- ``runs/<flower run id>.json`` beside it, written by ``zk0agg run`` right after it submitted the run: that run's
  output folder, ``--resume``, ``--no-verify``, ``--srs``, ``--cache-dir`` and its verdict settings.

The run file is also the operator's signature on the run: a ServerApp under ``zk0agg start`` whose run has none
(submitted with ``flwr run`` or the Control API by anyone, N1 of issue 30) refuses the run before it reads the
aggregator key, the chain, the validation set or the nodes (``RunNotSubmitted``). ``FederationConfig.from_run_config``
refuses a run config that names any operator key.
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
SUPERLINK_LOG_ENV = "ZK0_SUPERLINK_LOG"  # the SuperLink's log file, where a ServerApp also writes why it refused
# FederationConfig fields a run may not choose: endpoints, trust decisions, paths on the aggregator's machine
ENDPOINT_KEYS = ("chain_rpc", "registry", "verifier_url", "verify", "onchain_verify", "srs", "out_dir", "resume",
                 "cache_dir", "validation")  # validation: the data that judges the nodes (protocol/validation.py)
# ... and the settings that decide verdicts or rewards (zk0agg run's flags and -c, never the run config)
VERDICT_KEYS = ("harm_tolerance", "rise_tolerance", "min_gain", "selection", "krum_f", "krum_m", "min_nodes",
                "rounds", "server_optimizer", "server_lr", "server_momentum",
                "lora_rank")  # lora_rank: the model every node trains and is judged on (node/lora.py)
OPERATOR_KEYS = (*ENDPOINT_KEYS, *VERDICT_KEYS)
RUN_FILE_WAIT = 30.0  # seconds a ServerApp waits for zk0agg run's file of its run (written just after submission)


class RunNotSubmitted(UserError):
    """A run under ``zk0agg start`` that ``zk0agg run`` did not submit (no run file): refused, nothing touched."""


def write_json_private(path: Path, data: dict) -> None:
    """``data`` as JSON, readable by this user only (written whole, then renamed: a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def check_settings(settings: dict, source: str) -> dict:
    """Only ``OPERATOR_KEYS``, snake_case: a typo in an operator file is an error, not a default."""
    unknown = sorted(set(settings) - set(OPERATOR_KEYS))
    if unknown:
        raise UserError(f"{source}: unknown operator setting(s) {', '.join(unknown)}; known: "
                        f"{', '.join(OPERATOR_KEYS)}")
    return settings


def write_operator_file(path: Path, settings: dict) -> Path:
    """``zk0agg start``'s settings for every run of its SuperLink."""
    write_json_private(path, check_settings(dict(settings), str(path)))
    return path


def run_file(operator_file: Path, run_id: int) -> Path:
    return Path(operator_file).parent / "runs" / f"{int(run_id)}.json"


def write_run_settings(operator_file: Path, run_id: int, settings: dict) -> Path:
    """``zk0agg run``'s settings for its own run ``run_id`` (out_dir, resume, verify, srs, cache_dir, verdicts):
    written only on the aggregator's machine, it is what makes ``run_id`` a run of the operator's."""
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

    Without ``ZK0_OPERATOR_FILE`` in the environment (a SuperLink that ``zk0agg start`` did not start) there is no
    operator: the dataclass defaults (an unverified run in ``outputs/run``: no key, no chain, no validation set).
    Under ``zk0agg start``, ``runs/<run_id>.json`` is waited for up to ``wait`` seconds (``zk0agg run`` writes it
    once the SuperLink has given the run its id); a run without one is refused (``RunNotSubmitted``).
    """
    environ = os.environ if environ is None else environ
    if not environ.get(OPERATOR_FILE_ENV):
        return {}
    path = Path(environ[OPERATOR_FILE_ENV])
    per_run, deadline = run_file(path, run_id), time.monotonic() + wait
    while not per_run.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not per_run.exists():
        raise RunNotSubmitted(f"run {int(run_id)} refused: the aggregator's operator did not submit it (no {per_run}; "
                              "zk0agg run on the aggregator's machine writes it); nothing was signed or recorded")
    return {**_read(path), **_read(per_run)}


def tell_superlink_log(line: str, environ: dict | None = None) -> None:
    """Append ``line`` to the SuperLink's log (``ZK0_SUPERLINK_LOG``): Flower keeps a ServerApp's output for the
    run's own log only, and the operator reads the SuperLink's to learn what was refused there."""
    from datetime import UTC, datetime

    path = (os.environ if environ is None else environ).get(SUPERLINK_LOG_ENV)
    if not path:
        return
    try:
        with open(path, "a") as out:  # the SuperLink appends too: one short write is one line
            out.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} zk0 ServerApp: {line}\n")
    except OSError as err:
        log.warning("cannot write to the SuperLink's log %s: %s", path, err)
