"""Run outputs and the small pure pieces of the verified round."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from aggregator.config import FederationConfig
from aggregator.ledger.journal import Op
from aggregator.outputs import RunOutputs
from aggregator.protocol.gate import Outcome
from aggregator.protocol.strategy import RoundLog
from aggregator.protocol.verification import reply_address
from node.errors import UserError


def test_outputs_written_each_round_and_tx_hashes_filled_in_later(tmp_path):
    out = RunOutputs(tmp_path, "run-1", {"rounds": 2}, console=Console(file=open("/dev/null", "w")))
    out.initial(1.5)
    rlog = RoundLog(1, "0x" + "aa" * 32, [Outcome(7, "SELECTED", address="0xA", train_loss=1.2),
                                         Outcome(8, "BAD_PROOF", "BAD_PROOF", "EZKL rejected the proof")])
    out.add_round(rlog, 1.2, "0x" + "bb" * 32, {"round": 3.0}, success_rate=0.5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rounds"][0]["nodes"][0]["tx_hash"] is None and summary["rounds"][0]["success_rate"] == 0.5
    run = "0x" + "cc" * 32
    out.on_chain(Op(1, run, "record", 1, "0xa", {"node_id": 7}, "done", "0x01", 1, None), "0x01")
    out.on_chain(Op(2, run, "close", 1, "", {}, "done", "0x02", 1, None), "0x02")
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


def test_round_table_not_cut_when_output_is_not_a_terminal(tmp_path):
    """A piped demo log (no terminal, rich's default 80 columns) shows full statuses and short hashes uncut."""
    import io

    log = io.StringIO()  # not a terminal
    out = RunOutputs(tmp_path, "run-1", {"rounds": 1}, console=Console(file=log, width=80))
    wallet, tx = "0x2cc6" + "ab" * 17 + "4f1e", "0x" + "cd" * 32
    outcomes = [Outcome(123456789, "NOT_SELECTED", address=wallet, train_loss=1.2, loss_before=0.5, loss_after=0.4,
                        update_hash="0x" + "ef" * 32, tx_hash=tx),
                Outcome(987654321, "NO_IMPROVEMENT", "NO_IMPROVEMENT", address=wallet, train_loss=1.3,
                        loss_before=0.5, loss_after=0.6, update_hash="0x" + "ef" * 32, tx_hash=tx)]
    out.add_round(RoundLog(1, "0x" + "aa" * 32, outcomes), 1.2, "0x" + "bb" * 32, {}, success_rate=0.5)
    text = log.getvalue()
    for cell in ("NOT_SELECTED", "NO_IMPROVEMENT", "0x2cc6…4f1e", "0xcdcd…cdcd", "0.500→0.400"):
        assert cell in text, f"{cell!r} cut in:\n{text}"
