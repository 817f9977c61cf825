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


WALLETS = ["0x2cc6" + "ab" * 17 + "4f1e", "0x9a01" + "cd" * 17 + "77b2", "0x51f3" + "ef" * 17 + "0c9d"]


def two_round_run(tmp_path, episodes: int | None = 20) -> RunOutputs:
    """Round 1 averages two wallets and rejects a bad proof and an impostor; round 2 keeps the global model (its
    replies all fall short) and rejects a harmful update and a malformed reply that reported no loss."""
    out = RunOutputs(tmp_path, "run-1", {"rounds": 2}, console=Console(file=open("/dev/null", "w")))
    out.initial(1.5)
    impostor = Outcome(12345678901234567890, "BAD_SIGNATURE", "BAD_SIGNATURE", address=reply_address(1234),
                       claimed_address=WALLETS[2], train_loss=1.4)
    sim = {"success_rate": 0.15, **({"sim_eval_episodes": episodes} if episodes else {})}
    out.add_round(RoundLog(1, "0x" + "aa" * 32, [
        Outcome(11111111111111111111, "SELECTED", address=WALLETS[0], claimed_address=WALLETS[0], train_loss=1.2),
        Outcome(22222222222222222222, "SELECTED", address=WALLETS[1], claimed_address=WALLETS[1], train_loss=1.1),
        Outcome(33333333333333333333, "BAD_PROOF", "BAD_PROOF", address=WALLETS[2], train_loss=1.3), impostor]),
        1.2, "0x" + "bb" * 32, {}, **sim)
    out.add_round(RoundLog(2, "0x" + "bb" * 32, [
        Outcome(11111111111111111111, "NOT_SELECTED", address=WALLETS[0], train_loss=1.0),
        Outcome(22222222222222222222, "NOT_SELECTED", address=WALLETS[1], train_loss=0.9),
        Outcome(33333333333333333333, "HARMFUL", "HARMFUL", address=WALLETS[2], train_loss=2.0),
        Outcome(12345678901234567890, "MALFORMED", "MALFORMED", address=reply_address(1234))],
        kept_global=True, note="no reply useful"), 1.2, "0x" + "bb" * 32, {}, **{**sim, "success_rate": 0.3})
    return out


def visible_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_loss_chart_names_wallets_ticks_whole_rounds_and_marks_rejections_and_kept_rounds(tmp_path):
    from matplotlib.colors import to_hex

    from aggregator.outputs import REJECTED_COLOR, loss_figure

    out = two_round_run(tmp_path)
    fig = loss_figure(out.summary, out.metrics)
    nodes, evals = fig.axes
    for ax in (nodes, evals):
        assert visible_ticks(ax) and all(t == int(t) for t in visible_ticks(ax)), visible_ticks(ax)  # no 1.25
        kept = [p for p in ax.patches if p.get_x() < 2 < p.get_x() + p.get_width()]  # round 2's band
        assert len(kept) == 1 and not any(p.get_x() < 1 < p.get_x() + p.get_width() for p in ax.patches)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "0x2cc6…4f1e" in legend and "0x9a01…77b2" in legend and "0x51f3…0c9d" in legend
    assert "0x51f3…0c9d (claimed)" in legend  # the impostor: the wallet it claimed, never its reply key
    assert not any("1111111111" in t or "node 1" in t for t in legend)  # no 20-digit Flower node ids
    assert any("rejected" in t for t in legend) and any("global model kept" in t for t in legend)
    crosses = [line for line in nodes.lines if line.get_marker() == "X"]
    assert len(crosses) == 4 and all(to_hex(c.get_color()) == REJECTED_COLOR.lower() for c in crosses)
    assert sorted(c.get_xdata()[0] for c in crosses) == [1, 1, 2, 2]
    hollow = [line for line in nodes.lines if line.get_marker() == "o" and line.get_markerfacecolor() == "white"]
    assert len(hollow) == 2  # round 2's verified replies, not averaged in


def test_success_chart_in_percent_with_wilson_intervals_and_the_untrained_floor(tmp_path):
    from aggregator.outputs import success_figure, wilson_interval

    lo, hi = wilson_interval(3, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3604)
    assert wilson_interval(0, 20)[0] == 0.0 and 0.16 < wilson_interval(0, 20)[1] < 0.17  # never a zero-width bar
    out = two_round_run(tmp_path)
    fig = success_figure(out.summary, out.metrics)
    ax = fig.axes[0]
    assert all(t == int(t) for t in visible_ticks(ax)) and ax.get_ylim()[1] > 100
    assert ax.yaxis.get_major_formatter()(50, 0) == "50%"
    assert "20 episodes per round" in ax.get_title()
    line = next(c for c in ax.containers)  # the errorbar: points at 15 % and 30 %, Wilson bars around them
    assert list(line.lines[0].get_ydata()) == [15.0, 30.0]
    lower, upper = (caps.get_ydata() for caps in line.lines[1])  # round 1: 3 of 20
    assert (round(lower[0], 1), round(upper[0], 1)) == (round(100 * lo, 1), round(100 * hi, 1))
    assert {t.get_text() for t in ax.texts} >= {"3/20", "6/20"}
    assert not any(line.get_linestyle() == "--" for line in ax.lines)  # no floor recorded: no floor line
    out.initial(1.5, success_rate=0.2)  # the untrained model's own closed-loop rate
    assert out.summary["initial_success_rate"] == 0.2
    ax = success_figure(out.summary, out.metrics).axes[0]
    floor = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(floor) == 1 and list(floor[0].get_ydata()) == [20.0, 20.0]
    assert "untrained model: 20 %" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert (tmp_path / "success.png").stat().st_size > 10_000
