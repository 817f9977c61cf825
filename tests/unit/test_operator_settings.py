"""Endpoints, trust settings, paths and the settings that decide verdicts or rewards are the aggregator operator's: a
run config naming one is refused, the ServerApp takes them from the operator's files (aggregator.operator), and a
run without its operator file is refused (N1, issue 30)."""

from __future__ import annotations

import json

import pytest

from aggregator.config import FederationConfig
from aggregator.operator import (
    OPERATOR_FILE_ENV,
    OPERATOR_KEYS,
    VERDICT_KEYS,
    RunNotSubmitted,
    operator_settings,
    write_operator_file,
    write_run_settings,
)
from aggregator.tools.deploy import operator_part, run_config
from node.errors import UserError

ATTACKER = {"chain-rpc": "http://attacker.example:8545", "registry": "0x" + "11" * 20,
            "verifier-url": "http://attacker.example/verify", "verify": False, "onchain-verify": False,
            "srs": "/tmp/attacker.srs", "out-dir": "/etc/zk0", "resume": True, "cache-dir": "/tmp/attacker"}
# N1's run config: every reply averaged in and paid, a thousand rounds that each mint and advance unstake clocks,
# and a server step that multiplies whatever is averaged in a hundredfold
GENEROUS = {"harm-tolerance": 1e9, "rise-tolerance": 1e9, "min-gain": 0.0, "selection": "multikrum", "krum-f": 0,
            "krum-m": 50, "min-nodes": 1, "rounds": 1000, "server-optimizer": "avgm", "server-lr": 100.0,
            "server-momentum": 0.99, "lora-rank": 64}


@pytest.mark.parametrize("key", sorted(ATTACKER))
def test_run_config_cannot_set_operator_settings(key):
    assert key.replace("-", "_") in OPERATOR_KEYS
    with pytest.raises(UserError, match=f"^{key} must not be in the run config"):
        FederationConfig.from_run_config({"seed": 2, key: ATTACKER[key]}, environ={})


@pytest.mark.parametrize("key", sorted(GENEROUS))
def test_run_config_cannot_set_what_decides_verdicts_or_rewards(key):
    """N1 (issue 30): a run's submitter chose the gate's tolerances, min-gain, Krum's f and m, min-nodes and rounds.
    Each is refused in a run config, in one line that says where the operator sets it."""
    assert {k.replace("-", "_") for k in GENEROUS} == set(VERDICT_KEYS)
    with pytest.raises(UserError, match=f"^{key} must not be in the run config: it decides verdicts or rewards.*"
                                        f"zk0agg run --{key} on the aggregator's machine"):
        FederationConfig.from_run_config({"seed": 2, key: GENEROUS[key]}, environ={},
                                         operator={"chain_rpc": "http://127.0.0.1:8545", "verify": False})


def test_the_app_declares_no_operator_key():
    """Flower refuses an override of a key the app does not declare (StartRun), so a plain ``flwr run --run-config
    rounds=1000`` of the pinned bundle fails at the SuperLink already; from_run_config is the second wall."""
    import tomllib

    from node.trust import SOURCE_ROOT

    declared = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert not {k.replace("-", "_") for k in declared} & set(OPERATOR_KEYS)


def test_run_config_chooses_the_learning_only():
    cfg = FederationConfig.from_run_config({"local-steps": 5, "model": "tiny"},
                                           environ={"ZK0_AGGREGATOR_KEY": "0x" + "22" * 32},
                                           operator={"chain_rpc": "http://127.0.0.1:8545", "registry": "0x" + "33" * 20,
                                                     "verify": True, "out_dir": "/srv/run", "rounds": 4, "krum_f": 1})
    assert (cfg.rounds, cfg.krum_f, cfg.local_steps, cfg.verify, cfg.out_dir) == (4, 1, 5, True, "/srv/run")
    with pytest.raises(UserError, match="local_steps is not an operator setting"):
        FederationConfig.from_run_config({}, environ={}, operator={"local_steps": 1})


def test_operator_files(tmp_path):
    """operator.json for every run; runs/<id>.json (zk0agg run's) for its own run; a run without one is refused."""
    path = write_operator_file(tmp_path / "agg" / "operator.json", {
        "chain_rpc": "http://127.0.0.1:8545", "registry": "0x" + "33" * 20, "verify": True,
        "verifier_url": "http://127.0.0.1:8470", "validation": "local:/srv/val"})
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    environ = {OPERATOR_FILE_ENV: str(path)}
    # a run submitted by someone else (flwr run, the Control API): refused, whatever it was going to do
    with pytest.raises(RunNotSubmitted, match=r"^run 7 refused: the aggregator's operator did not submit it "
                                              r"\(no .*runs/7.json; zk0agg run .*\); nothing was signed or recorded"):
        operator_settings(7, environ, wait=0.3)
    # zk0agg run's own run: its folder, resume, SRS and verdict rules, over the operator's endpoints
    verdicts = {"rounds": 4, "min_nodes": 5, "krum_f": 1, "krum_m": 3, "harm_tolerance": 0.3,
                "rise_tolerance": 0.4, "min_gain": 0.05, "selection": "multikrum"}
    run = write_run_settings(path, 8, {"out_dir": str(tmp_path / "mine"), "resume": True, "srs": "dev",
                                       "verify": True, **verdicts})
    assert oct(run.stat().st_mode & 0o777) == "0o600" and oct(run.parent.stat().st_mode & 0o777) == "0o700"
    mine = operator_settings(8, environ, wait=0)
    assert (mine["out_dir"], mine["resume"], mine["chain_rpc"]) == (str(tmp_path / "mine"), True,
                                                                   "http://127.0.0.1:8545")
    cfg = FederationConfig.from_run_config({"local-steps": 5}, environ={"ZK0_AGGREGATOR_KEY": "0x" + "22" * 32},
                                           operator=mine)
    assert {name: getattr(cfg, name) for name in verdicts} == verdicts and cfg.validation == "local:/srv/val"
    assert operator_settings(9, {}, wait=0) == {}  # no zk0agg start: the dataclass defaults (unverified, no key)
    path.write_text(json.dumps({"chain-rpc": "x"}))  # a typo is an error, not a silent default
    with pytest.raises(UserError, match="unknown operator setting"):
        operator_settings(8, environ, wait=0)


def test_control_api_answers_loopback_peers_only():
    """flwr 1.41 serves the Control API on the nodes' port with no login: zk0agg start's SuperLink (Flower's own app,
    built here as flower-superlink builds it) answers a Control request from another address with 403 before Flower
    reads it, and the Fleet API stays open to the nodes."""
    import flwr.superlink.main as superlink
    from fastapi.testclient import TestClient
    from flwr.proto.control_pb2 import ListRunsRequest

    from aggregator.tools.control_guard import guarded, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    assert not any(is_loopback(h) for h in ("192.0.2.7", "::ffff:10.0.0.1", "", None, "testclient"))
    flowers = superlink._get_middleware
    try:
        superlink._get_middleware = guarded(flowers)
        app = superlink.create_app()
    finally:
        superlink._get_middleware = flowers
    body, protobuf = ListRunsRequest().SerializeToString(), {"content-type": "application/protobuf"}

    def post(host: str, path: str):
        return TestClient(app, client=(host, 50000)).post(path, content=body, headers=protobuf)

    for host in ("127.0.0.1", "::1"):
        assert post(host, "/v1/control/list-runs").status_code == 200
    for host in ("192.0.2.7", "::ffff:10.0.0.1"):
        for path in ("/v1/control/list-runs", "/v1/control/start-run", "/v1/control/register-node",
                     "/v1/control/stop-run/"):
            refused = post(host, path)
            assert refused.status_code == 403 and "answers its own machine only" in refused.text, (host, path)
    assert "answers its own machine only" not in post("192.0.2.7", "/v1/fleet/send-node-heartbeat").text


def test_deployment_run_config_leaves_the_operator_out():
    """What zk0agg run and the deployment demo submit carries no operator setting (the verdict rules included), even
    for an app that declares them (an older pyproject.toml): they go to the operator's files (operator_part)."""
    from flwr.cli.build import build_fab_from_files

    declared = "\n".join(f"{k} = {json.dumps(v)}" for k, v in ATTACKER.items())
    pyproject = ('[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
                 '[project]\nname = "zk0"\nversion = "0.1.0"\ndependencies = []\n\n'
                 '[tool.flwr.app]\npublisher = "zk0"\n\n'
                 '[tool.flwr.app.components]\nserverapp = "a:app"\nclientapp = "a:app"\n\n'
                 f'[tool.flwr.app.config]\nrounds = 3\nlocal-steps = 20\nmin-gain = -1.0\n{declared}\n')
    fab, _ = build_fab_from_files({"pyproject.toml": pyproject.encode(), "a.py": b""})
    fed = FederationConfig(rounds=2, local_steps=5, min_gain=0.05, verify=True, chain_rpc="http://127.0.0.1:8545",
                           registry="0x" + "33" * 20, aggregator_key="0x" + "22" * 32, out_dir="/srv/run", resume=True)
    config = run_config(fed, fab)
    assert config["local-steps"] == 5
    assert not {k.replace("-", "_") for k in config} & set(OPERATOR_KEYS)
    operator = operator_part(fed)
    assert operator["chain_rpc"] == "http://127.0.0.1:8545" and operator["resume"] is True
    assert (operator["rounds"], operator["min_gain"]) == (2, 0.05)


def test_output_folder_and_journal_are_checked_before_a_run(tmp_path):
    import sqlite3

    from aggregator.run_folder import JOURNAL_FILE, check_run_paths

    check_run_paths(tmp_path / "new" / "run", resume=False)  # made later by the run
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_run_paths(tmp_path / "file", resume=False)
    run = tmp_path / "run"
    run.mkdir()
    with sqlite3.connect(run / JOURNAL_FILE) as db:
        db.execute("CREATE TABLE ops (id INTEGER)")
    check_run_paths(run, resume=True)
    (run / JOURNAL_FILE).write_bytes(b"SQLite format 3\x00" + b"\xff" * 600)  # a torn write, a bad copy
    with pytest.raises(UserError, match="journal .* is corrupted"):
        check_run_paths(run, resume=True)
    (run / JOURNAL_FILE).unlink()
    (run / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="summary.json is unreadable"):
        check_run_paths(run, resume=True)


def test_a_new_run_never_takes_a_folder_that_holds_a_run(tmp_path):
    """A second zk0agg run into a run's folder once replaced its summary.json silently: 9 records of 4 runs were in
    no summary. Now it is refused before anything is submitted; --resume may continue it."""
    from aggregator.run_folder import JOURNAL_FILE, check_run_paths

    for name in ("summary.json", JOURNAL_FILE):
        run = tmp_path / name
        run.mkdir()
        (run / name).write_text("{}")
        with pytest.raises(UserError, match="holds a run already: --resume continues it"):
            check_run_paths(run, resume=False)
    check_run_paths(tmp_path / "summary.json", resume=True)


def test_one_writer_per_run_folder_and_the_lock_dies_with_its_process(tmp_path):
    """A second --resume while the run goes on is refused in one line naming the writer; a killed run leaves no
    stale lock (flock is dropped with its process), so the resume after a kill is not refused."""
    import os
    import signal
    import subprocess
    import sys

    from aggregator.run_folder import RunFolderLock, check_run_paths, claim_run_folder

    with claim_run_folder(tmp_path, resume=False):
        with pytest.raises(UserError, match=f"another run is writing .* \\(pid {os.getpid()}\\)"):
            check_run_paths(tmp_path, resume=True)
        with pytest.raises(UserError, match="one run per output folder"):
            claim_run_folder(tmp_path, resume=True)
    check_run_paths(tmp_path, resume=True)  # released
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from aggregator.run_folder import "
                               "RunFolderLock; RunFolderLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        RunFolderLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    RunFolderLock(tmp_path).acquire().release()


def test_a_run_clears_an_earlier_stop_request(tmp_path):
    """Ctrl-C leaves a STOP file for the ServerApp; the next run (a --resume) in that folder must not stop at once."""
    from aggregator.run_folder import claim_run_folder, request_stop, stop_requested

    request_stop(tmp_path)
    assert stop_requested(tmp_path)
    with claim_run_folder(tmp_path, resume=True):
        assert not stop_requested(tmp_path)


def test_rpc_credentials_are_never_shown_or_written():
    """N11 (issue 30): a hosted RPC endpoint's key in its URL (user:key@, ?apikey=) was on every explorer page, the
    503 banner, summary.json and the W&B config. Every place that shows or writes a URL now shows it redacted; the
    explorer's header and banner are checked on a page rendered for such a URL."""
    from fastapi.testclient import TestClient

    from aggregator.explorer.app import make_app
    from aggregator.explorer.config import ExplorerConfig
    from contracts.endpoints import redact_url

    url = "https://user:s3cr3t@rpc.example.org:8545/v2/path?apikey=s3cr3t"
    assert redact_url(url) == "https://***@rpc.example.org:8545/v2/path?***"
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("http://[::1]:8545/") == "http://[::1]:8545/" and redact_url("") == ""
    cfg = FederationConfig(chain_rpc=url, verifier_url="https://u:p@verify.example.org/?token=s3cr3t")
    assert "s3cr3t" not in json.dumps(cfg.to_dict()) and cfg.chain_rpc == url  # used as given, written redacted
    page = TestClient(make_app(ExplorerConfig(rpc_url="http://user:s3cr3t@127.0.0.1:9/", registry="0x" + "11" * 20,
                                                timeout=0.5))).get("/")
    assert page.status_code == 503 and "s3cr3t" not in page.text and "127.0.0.1:9" in page.text
