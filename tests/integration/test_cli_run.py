"""``zk0agg run`` as an operator types it (issue 33): dataset paths, and the model it trains.

Paths: ``zk0agg fixtures`` prints absolute ``local:`` URIs, and
``zk0agg run --heldout`` and ``zk0agg start --validation`` take a ``local:`` path relative to the folder they are run
in. Their ServerApp runs in another folder (under the SuperLink's state dir): a relative path handed on as typed was
looked up there, and found missing only two minutes into the run, in a ServerApp traceback. Now the path is made
absolute when the command parses it and checked before anything is submitted or started (one line if missing);
``hf:`` URIs are handed on as they are.

And what a run trains: ``zk0agg run`` trained ``tiny`` on ``pick_place`` (``tiny`` cannot see) while the demo trains
``learn`` on ``reach``, and neither ``run`` nor ``register-circuit`` had a ``--model``. Both default to the demo's
model now, and so do the app's run config defaults (pyproject's ``[tool.flwr.app.config]``, what a bare ``flwr run``
uses).

Nothing is submitted and no SuperLink starts here: the step that would (``submit_operator_run``,
``SuperLinkOptions.start``) is replaced by one that records what it was given. This is a stand-in on purpose, not
for a fault: what these tests pin is what the command hands on (a real SuperLink only stores it, and a real run would
take minutes per case); the real submission, SuperLink and ServerApp are tests/integration/test_deployment.py's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_cli import GOOD_HASH, assert_user_error, cli, started_here

from node.errors import UserError
from node.trust import SOURCE_ROOT


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``zk0agg fixtures`` run as a user runs it, with a relative ``--out``: (its folder, {name: printed URI})."""
    folder = tmp_path_factory.mktemp("fixtures-here")
    result = cli(folder, "zk0agg", "fixtures", "--nodes", "1", "--out", "data", "--episodes", "1", "--frames", "8")
    assert result.returncode == 0, result.stderr
    uris = dict(re.findall(r"^([^:\n]+): (\S+)$", result.stdout, re.M))
    assert set(uris) == {"node 0", "held-out", "validation"}, result.stdout
    return folder, uris


def test_fixtures_prints_absolute_local_paths(fixtures):
    folder, uris = fixtures
    for name, uri in uris.items():
        scheme, _, path = uri.partition(":")
        assert scheme == "local" and Path(path).is_absolute(), (name, uri)
        assert Path(path).is_relative_to(folder / "data") and (Path(path) / "meta" / "info.json").is_file(), uri


def _dataset_here(fixtures, tmp_path: Path) -> Path:
    """The fixtures' held-out set, copied to ``tmp_path/data/heldout`` (a relative ``local:data/heldout`` there)."""
    folder, uris = fixtures
    target = tmp_path / "data" / "heldout"
    shutil.copytree(folder / uris["held-out"].removeprefix("local:"), target)  # (absolute: folder is dropped)
    return target


@pytest.fixture
def submitted(monkeypatch) -> list[dict]:
    """What ``zk0agg run`` would submit: the run config and operator settings of each call, nothing sent."""
    calls: list[dict] = []

    def submit(address, fab, run_config, operator_file, settings, insecure, ca=None):
        calls.append({"config": run_config, "settings": settings})
        return 7

    monkeypatch.setattr("aggregator.tools.deploy.submit_operator_run", submit)
    monkeypatch.setattr("aggregator.cli.run.tee_output", lambda path: Path(path))  # no copier forked in pytest
    return calls


def _run(tmp_path: Path, heldout: str, name: str, *flags: str):
    app = tmp_path / "app"  # a small app bundle that declares the zk0 run config (bundling the tree is slower)
    if not app.exists():
        (app / "pkg").mkdir(parents=True)
        (app / "pyproject.toml").write_text((SOURCE_ROOT / "pyproject.toml").read_text())
        (app / "pkg" / "__init__.py").write_text("")
    return cli(tmp_path, "zk0agg", "run", "--heldout", heldout, "--no-verify", "--detach", "--app", str(app),
               "--state-dir", str(started_here(tmp_path)), "--out", name, *flags)


def test_run_hands_the_serverapp_an_absolute_heldout_path(fixtures, tmp_path, submitted):
    heldout = _dataset_here(fixtures, tmp_path)
    result = _run(tmp_path, "local:data/heldout", "run")
    assert result.returncode == 0, result.stderr
    assert [c["config"]["heldout"] for c in submitted] == [f"local:{heldout}"]
    assert "run 7 submitted" in result.stdout

    result = _run(tmp_path, "hf:lerobot/svla_so100_pickplace", "run-hub")  # a Hub dataset: as given, loaded there
    assert result.returncode == 0, result.stderr
    assert submitted[-1]["config"]["heldout"] == "hf:lerobot/svla_so100_pickplace"


def test_run_refuses_a_missing_or_malformed_heldout_in_one_line(tmp_path, submitted):
    assert_user_error(_run(tmp_path, "local:no/such/heldout", "run"), "--heldout", str(tmp_path / "no/such/heldout"),
                      "does not exist")
    assert_user_error(_run(tmp_path, "s3://bucket/heldout", "run"), "--heldout", "bad dataset URI")
    assert submitted == []


def test_start_gives_the_serverapp_an_absolute_validation_path(fixtures, tmp_path, monkeypatch):
    from aggregator.tools.deploy import SuperLinkOptions, free_port

    started: list[dict] = []

    def start(self, secrets, *args, **kwargs):
        started.append(dict(self.operator))
        raise UserError("stopped by the test before the SuperLink starts")

    monkeypatch.setattr(SuperLinkOptions, "start", start)
    monkeypatch.setattr("aggregator.cli.start.tee_output", lambda path: Path(path))
    validation = _dataset_here(fixtures, tmp_path)
    start_args = ["start", "--insecure", "--port", str(free_port()), "--app-hash", GOOD_HASH, "--state-dir", "agg"]
    assert_user_error(cli(tmp_path, "zk0agg", *start_args, "--validation", "local:data/heldout"),
                      "stopped by the test")
    assert [s["validation"] for s in started] == [f"local:{validation}"]

    assert_user_error(cli(tmp_path, "zk0agg", *start_args, "--validation", "local:missing"), "--validation",
                      str(tmp_path / "missing"), "does not exist")
    assert len(started) == 1


def test_run_trains_what_the_demo_trains_unless_told(synthetic, tmp_path, submitted):
    result = _run(tmp_path, synthetic.heldout, "default")
    assert result.returncode == 0, result.stderr
    result = _run(tmp_path, synthetic.heldout, "tiny", "--model", "tiny", "--task", "pick_place")
    assert result.returncode == 0, result.stderr
    assert [(c["config"]["model"], c["config"]["sim-task"]) for c in submitted] == [("learn", "reach"),
                                                                                    ("tiny", "pick_place")]


def test_register_circuit_defaults_to_the_runs_model_and_the_app_config_to_the_demos():
    import tomllib

    from aggregator.cli.app import build_parser

    args = build_parser().parse_args(["register-circuit", "--dataset", "local:/x"])
    run = build_parser().parse_args(["run", "--heldout", "local:/x"])
    demo = build_parser().parse_args(["demo"])
    assert args.model == run.model == demo.model == "learn" and run.task == demo.task == "reach"
    declared = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert (declared["model"], declared["sim-task"]) == ("learn", "reach")


def test_run_writes_what_decides_verdicts_to_its_run_file_never_the_run_config(fixtures, tmp_path, monkeypatch):
    """N1 (issue 30): the gate's tolerances, min-gain, the selection rule, Krum's f and m, min-nodes and rounds are
    the operator's. ``zk0agg run`` (flags, or ``-c`` on this machine) writes them to ``runs/<id>.json`` beside the
    SuperLink's operator.json, 0600, and submits a run config without them; the ServerApp's config, built from that
    file as the ServerApp builds it, has them. Only the network call is left out (``submit_run``); the run file is
    written by the real ``submit_operator_run``."""
    from aggregator.config import FederationConfig
    from aggregator.operator import OPERATOR_FILE_ENV, VERDICT_KEYS, operator_settings, write_operator_file

    sent: list[dict] = []
    monkeypatch.setattr("aggregator.tools.deploy.submit_run",
                        lambda address, fab, config, insecure, ca=None: sent.append(config) or 7)
    monkeypatch.setattr("aggregator.cli.run.tee_output", lambda path: Path(path))
    _dataset_here(fixtures, tmp_path)
    result = _run(tmp_path, "local:data/heldout", "run", "--model", "tiny", "--rounds", "4", "--min-nodes", "5",
                  "--krum-f", "1", "--krum-m", "3", "--harm-tolerance", "0.3", "--selection", "multikrum",
                  "--server-optimizer", "avgm", "--server-momentum", "0.7", "--lora-rank", "4",
                  "-c", "min-gain=0.05", "-c", "rise-tolerance=0.4", "-c", "eval-batches=2")
    assert result.returncode == 0, result.stderr
    assert "4 round(s)" in result.stdout
    (config,) = sent
    assert config["eval-batches"] == 2 and not {k.replace("-", "_") for k in config} & set(VERDICT_KEYS)
    state = tmp_path / "state"
    run_file = state / "runs" / "7.json"
    assert oct(run_file.stat().st_mode & 0o777) == "0o600"
    write_operator_file(state / "operator.json", {})  # what zk0agg start writes (no chain here)
    settings = operator_settings(7, {OPERATOR_FILE_ENV: str(state / "operator.json")}, wait=0)
    cfg = FederationConfig.from_run_config(config, environ={}, operator=settings)
    assert {name: getattr(cfg, name) for name in VERDICT_KEYS} == {
        "rounds": 4, "min_nodes": 5, "krum_f": 1, "krum_m": 3, "harm_tolerance": 0.3, "rise_tolerance": 0.4,
        "min_gain": 0.05, "selection": "multikrum", "server_optimizer": "avgm", "server_lr": 1.0,
        "server_momentum": 0.7, "lora_rank": 4}
    assert (cfg.out_dir, cfg.verify, cfg.eval_batches) == (str(tmp_path / "run"), False, 2)
