"""Issue 33: ``zk0agg run`` trained ``tiny`` on ``pick_place`` (``tiny`` cannot see) while the demo trains ``learn`` on
``reach``, and neither ``run`` nor ``register-circuit`` had a ``--model``. Both default to the demo's model now, and
the app's run config defaults (pyproject's ``[tool.flwr.app.config]``, what a bare ``flwr run`` uses) are the
demo's too. Nothing is submitted: the step that would is replaced by one that records what it was given."""

from __future__ import annotations

import tomllib

import pytest
from test_cli import cli, started_here

from node.trust import SOURCE_ROOT


@pytest.fixture
def submitted(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    def submit(address, fab, run_config, operator_file, settings, insecure, ca=None):
        calls.append(run_config)
        return 7

    monkeypatch.setattr("aggregator.tools.deploy.submit_operator_run", submit)
    monkeypatch.setattr("aggregator.cli.run.tee_output", lambda path: path)  # no copier forked in pytest
    return calls


def _run(tmp_path, heldout: str, name: str, *flags: str):
    app = tmp_path / "app"  # a small app bundle that declares the zk0 run config (bundling the tree is slower)
    if not app.exists():
        (app / "pkg").mkdir(parents=True)
        (app / "pyproject.toml").write_text((SOURCE_ROOT / "pyproject.toml").read_text())
        (app / "pkg" / "__init__.py").write_text("")
    return cli(tmp_path, "zk0agg", "run", "--heldout", heldout, "--no-verify", "--detach", "--app", str(app),
               "--state-dir", str(started_here(tmp_path)), "--out", name, *flags)


def test_run_trains_what_the_demo_trains_unless_told(synthetic, tmp_path, submitted):
    result = _run(tmp_path, synthetic.heldout, "default")
    assert result.returncode == 0, result.stderr
    result = _run(tmp_path, synthetic.heldout, "tiny", "--model", "tiny", "--task", "pick_place")
    assert result.returncode == 0, result.stderr
    assert [(c["model"], c["sim-task"]) for c in submitted] == [("learn", "reach"), ("tiny", "pick_place")]


def test_register_circuit_defaults_to_the_runs_model_and_the_app_config_to_the_demos():
    from aggregator.cli.app import build_parser

    args = build_parser().parse_args(["register-circuit", "--dataset", "local:/x"])
    run = build_parser().parse_args(["run", "--heldout", "local:/x"])
    demo = build_parser().parse_args(["demo"])
    assert args.model == run.model == demo.model == "learn" and run.task == demo.task == "reach"
    declared = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert (declared["model"], declared["sim-task"]) == ("learn", "reach")
