"""W&B logging of a run, the pure pieces: every status counted, the replies table, what a round left on disk."""

from __future__ import annotations

from aggregator.protocol.gate import REASONS
from aggregator.wandb_log import round_metrics


def test_every_status_has_a_counter_harmful_included():
    harmful = {"node_id": 1, "address": "0xA", "status": "HARMFUL", "reason": "HARMFUL", "score": -0.3}
    selected = {"node_id": 2, "address": "0xB", "status": "SELECTED", "score": 0.1}
    m = round_metrics({"round": 3, "server_eval_loss": 0.5, "nodes": [harmful, selected]})
    assert m["nodes/status/HARMFUL"] == 1 and m["nodes/status/SELECTED"] == 1
    m = round_metrics({"round": 4, "server_eval_loss": 0.5, "nodes": [selected]})
    for status in ("NOT_SELECTED", *REASONS):  # zeros too: each status has a continuous chart, HARMFUL's included
        assert m.get(f"nodes/status/{status}") == 0, status


def test_reply_rows_hold_node_wallet_status_reason_score_losses_and_tx():
    from aggregator.wandb_log import REPLY_COLUMNS, reply_rows

    entry = {"round": 2, "nodes": [
        {"node_id": 12345678901234567890, "address": "0xA", "claimed_address": "0xA", "status": "SELECTED",
         "reason": None, "detail": "", "score": 0.25, "loss_before": 1.0, "loss_after": 0.8, "train_loss": 1.1,
         "update_hash": "0xu", "tx_hash": "0xt"},
        {"node_id": 7, "address": "0xK", "claimed_address": "0xA", "status": "BAD_SIGNATURE",
         "reason": "BAD_SIGNATURE", "detail": "signed by 0xE", "score": None, "loss_before": None,
         "loss_after": None, "train_loss": [1.0], "update_hash": None, "tx_hash": None}]}
    rows = [dict(zip(REPLY_COLUMNS, row, strict=True)) for row in reply_rows(entry)]
    assert rows[0] == {"round": 2, "node": "12345678901234567890", "wallet": "0xA", "claimed wallet": "0xA",
                       "status": "SELECTED", "reason": None, "detail": "", "score": 0.25, "loss before": 1.0,
                       "loss after": 0.8, "train loss": 1.1, "update hash": "0xu", "tx": "0xt"}
    assert rows[1]["reason"] == "BAD_SIGNATURE" and rows[1]["train loss"] is None  # a node's list is no number


def test_round_media_finds_the_rounds_videos_and_the_charts(tmp_path):
    from aggregator.wandb_log import round_media

    videos = tmp_path / "evaluate" / "round_2"
    videos.mkdir(parents=True)
    (videos / "seed_1000.mp4").write_bytes(b"mp4")
    (videos / "seed_1001.mp4").write_bytes(b"")  # an encode that failed: nothing to show
    (tmp_path / "evaluate" / "round_1").mkdir()
    (tmp_path / "evaluate" / "round_1" / "seed_1000.mp4").write_bytes(b"mp4")
    (tmp_path / "losses.png").write_bytes(b"png")
    assert round_media(tmp_path, 2) == {"eval/video/seed_1000": ("video", videos / "seed_1000.mp4"),
                                        "charts/losses": ("image", tmp_path / "losses.png")}
    assert round_media(tmp_path / "missing", 1) == {}
