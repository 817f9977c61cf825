"""Operator views: W&B round metrics, the status commands when nothing runs, the console-to-file tee."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aggregator.wandb_log import gas_by_round, round_metrics, wandb_mode


def entry(**extra) -> dict:
    nodes = [
        {"node_id": 1, "address": "0xA", "status": "SELECTED", "train_loss": 1.0, "loss_before": 0.9,
         "loss_after": 0.5, "prove_seconds": 2.0, "verify_seconds": 0.2, "proof_bytes": 7000, "tx_hash": "0x1"},
        {"node_id": 2, "address": "0xB", "status": "NOT_SELECTED", "train_loss": 3.0, "loss_before": 0.8,
         "loss_after": 0.7, "prove_seconds": 4.0, "verify_seconds": 0.4, "proof_bytes": 7100, "tx_hash": "0x2"},
        {"node_id": 3, "address": "0xC", "status": "BAD_PROOF", "train_loss": 2.0, "loss_before": 0.1,
         "loss_after": 0.0, "prove_seconds": [1.0], "verify_seconds": None, "proof_bytes": None, "tx_hash": None},
    ]
    return {"round": 4, "server_eval_loss": 0.7, "kept_global": False, "no_reply": [9], "nodes": nodes,
            "open_tx_hash": "0xo", "close_tx_hash": "0xc", **extra}


def test_round_metrics_counts_statuses_and_summarises_nodes():
    m = round_metrics(entry(success_rate=0.5), {"round": 12.0})
    assert m["round"] == 4 and m["eval/server_loss"] == 0.7 and m["eval/success_rate"] == 0.5
    assert (m["nodes/status/SELECTED"], m["nodes/status/NOT_SELECTED"], m["nodes/status/BAD_PROOF"]) == (1, 1, 1)
    assert m["nodes/status/STALE"] == 0 and m["nodes/no_reply"] == 1 and m["nodes/replies"] == 3
    assert (m["krum/verified"], m["krum/selected"], m["krum/kept_global"]) == (2, 1, 0)
    assert m["train/loss_mean"] == pytest.approx(2.0)
    assert m["proof/loss_after_mean"] == pytest.approx(0.6)  # verified replies only
    assert m["proof/prove_seconds_max"] == 4.0  # the list a node sent is not a number: skipped
    assert m["proof/bytes_min"] == 7000 and "score_mean" not in m
    assert m["node/0xA/selected"] == 1 and m["node/0xC/selected"] == 0 and m["time/round_seconds"] == 12.0
    scored = entry()
    for i, node in enumerate(scored["nodes"]):
        node["score"] = 0.1 * i
    assert round_metrics(scored)["score_max"] == pytest.approx(0.2)


def test_gas_by_round_sums_what_landed():
    gas = {"0xo": 100, "0xc": 50, "0x1": 300, "0x2": 310}
    (row,) = gas_by_round({"rounds": [entry()]}, gas.__getitem__)
    assert row == {"round": 4, "chain/gas_open": 100, "chain/gas_close": 50, "chain/gas_records": 610,
                   "chain/gas_total": 760, "chain/transactions": 4}


def test_wandb_mode_is_offline_without_a_key_and_obeys_wandb_mode():
    assert wandb_mode({}) == "offline"
    assert wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}) == "disabled"
    # a key but no W&B server reachable (a closed local port): offline, at once
    assert wandb_mode({"WANDB_API_KEY": "k", "WANDB_BASE_URL": "http://127.0.0.1:9"}, timeout=1.0) == "offline"


def test_status_says_when_nothing_runs(tmp_path, capsys):
    from aggregator.cli import main as zk0agg
    from node.cli import main as zk0node

    assert zk0agg(["status", "--state-dir", str(tmp_path / "agg")]) == 1
    assert "nothing runs" in capsys.readouterr().out
    assert zk0node(["status", "--state-dir", str(tmp_path / "node")]) == 1
    assert "no SuperNode runs here" in capsys.readouterr().out


def test_status_of_an_aggregator_that_has_gone(tmp_path, capsys):
    """federation.json left behind by a zk0agg start that exited: its pid is dead and its SuperLink silent."""
    from aggregator.cli import main as zk0agg
    from aggregator.tools.deploy import free_port
    from node.cli import main as zk0node

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "agg"
    state.mkdir()
    (state / "federation.json").write_text(json.dumps({"superlink": f"127.0.0.1:{free_port()}", "insecure": True,
                                                       "pid": dead.pid, "chain_rpc": None}))
    assert zk0agg(["status", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert "NOT RUNNING" in out and "DOWN" in out and "nothing runs: the SuperLink does not answer" in out

    node = tmp_path / "node"
    node.mkdir()
    (node / "supernode.json").write_text(json.dumps({"pid": dead.pid, "superlink": "127.0.0.1:9092",
                                                     "app_hashes": ["ab" * 32], "address": "0xW",
                                                     "dataset": "local:/data", "runtime_port": free_port()}))
    assert zk0node(["status", "--state-dir", str(node)]) == 1
    out = capsys.readouterr().out
    assert "NOT RUNNING" in out and "ab" * 32 in out and "local:/data" in out and "0xW" in out


def test_tee_output_copies_both_streams_and_children_to_the_file(tmp_path):
    log = tmp_path / "logs" / "cmd.log"
    code = (f"import subprocess, sys; from node.logs import tee_output; tee_output({str(log)!r}); print('out'); "
            "print('err', file=sys.stderr); subprocess.run(['echo', 'child'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["out", "child"] and result.stderr.strip() == "err"
    assert sorted(log.read_text().split()) == ["child", "err", "out"]
