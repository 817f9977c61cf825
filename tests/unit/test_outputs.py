"""Run outputs and the small pure pieces of the verified round."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from aggregator.config import FederationConfig
from aggregator.gate import Outcome
from aggregator.journal import Op
from aggregator.outputs import RunOutputs
from aggregator.strategy import RoundLog
from aggregator.verification import reply_address
from node.errors import UserError


def test_outputs_written_each_round_and_tx_hashes_filled_in_later(tmp_path):
    out = RunOutputs(tmp_path, "run-1", {"rounds": 2}, console=Console(file=open("/dev/null", "w")))
    out.initial(1.5)
    rlog = RoundLog(1, "0x" + "aa" * 32, [Outcome(7, "SELECTED", address="0xA", train_loss=1.2),
                                         Outcome(8, "BAD_PROOF", "BAD_PROOF", "EZKL rejected the proof")])
    out.add_round(rlog, 1.2, "0x" + "bb" * 32, {"round": 3.0}, success_rate=0.5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rounds"][0]["nodes"][0]["tx_hash"] is None and summary["rounds"][0]["success_rate"] == 0.5
    out.on_chain(Op(1, "record", 1, "0xa", {"node_id": 7}, "done", "0x01", 1, None), "0x01")
    out.on_chain(Op(2, "close", 1, "", {}, "done", "0x02", 1, None), "0x02")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rounds"][0]["nodes"][0]["tx_hash"] == "0x01" and summary["rounds"][0]["close_tx_hash"] == "0x02"
    rows = list(csv.DictReader((tmp_path / "contributions.csv").open()))
    assert [r["status"] for r in rows] == ["SELECTED", "BAD_PROOF"]
    assert (tmp_path / "losses.png").exists() and (tmp_path / "success.png").exists()


def test_reply_address_is_stable_and_not_a_wallet_slot():
    a, b = reply_address(1), reply_address(2)
    assert a == reply_address(1) and a != b
    assert a.startswith("0x") and len(a) == 42


def test_config_hides_secrets_and_requires_chain_for_verification():
    cfg = FederationConfig(verify=True, chain_rpc="http://127.0.0.1:8545", registry="0x1", aggregator_key="0xkey")
    assert cfg.to_dict()["aggregator_key"] == "***"
    with pytest.raises(UserError, match="chain_rpc"):
        FederationConfig(verify=True)
