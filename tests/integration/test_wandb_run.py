"""A run's W&B record, offline, as ``wandb sync`` would upload it: per round the closed-loop videos, the charts
and a table of the replies; at the end every reply with the transactions that landed since, the final checkpoint
as a model artifact (as LeRobot's trainer logs its checkpoints), and the ``wandb sync`` command, printed last.

The run folder is what the ServerApp leaves: ``RunOutputs`` (summary, charts), LeRobot-written rollout videos under
``evaluate/round_<r>/`` and a ``save_pretrained``-shaped checkpoint per round; W&B is real (offline mode).
"""

from __future__ import annotations

import json
import logging

import numpy as np
from rich.console import Console

from aggregator.ledger.journal import Op
from aggregator.outputs import RunOutputs
from aggregator.protocol.gate import Outcome
from aggregator.protocol.strategy import RoundLog

WALLETS = ["0x2cc6" + "ab" * 17 + "4f1e", "0x9a01" + "cd" * 17 + "77b2", "0x51f3" + "ef" * 17 + "0c9d"]


def finished_run(out) -> RunOutputs:
    from lerobot.utils.io_utils import write_video
    from safetensors.numpy import save_file

    outputs = RunOutputs(out, "run-1", {"rounds": 2}, console=Console(file=open("/dev/null", "w")))
    outputs.initial(1.5)
    for rnd in (1, 2):
        replies = [Outcome(11, "SELECTED", address=WALLETS[0], train_loss=1.2, score=0.2, loss_before=1.0,
                           loss_after=0.8),
                   Outcome(22, "NOT_SELECTED", address=WALLETS[1], train_loss=1.1, score=-0.01),
                   Outcome(33, "HARMFUL" if rnd == 2 else "BAD_PROOF", "HARMFUL" if rnd == 2 else "BAD_PROOF",
                           address=WALLETS[2], train_loss=2.0, score=-0.5 if rnd == 2 else None)]
        folder = out / "evaluate" / f"round_{rnd}"
        folder.mkdir(parents=True)
        for seed in (1000, 1001):
            write_video(str(folder / f"seed_{seed}.mp4"), [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)],
                        fps=10)
        checkpoint = out / "checkpoints" / f"round_{rnd}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        save_file({"w": np.zeros(4, np.float32)}, str(checkpoint / "model.safetensors"))
        (checkpoint / "config.json").write_text(json.dumps({"type": "smolvla"}))
        outputs.add_round(RoundLog(rnd, "0x" + "aa" * 32, replies), 1.3 - 0.1 * rnd, "0x" + f"{rnd:02x}" * 32,
                          {"round": 5.0}, success_rate=0.1 * rnd, sim_eval_episodes=10)
    return outputs


def test_offline_run_holds_videos_charts_replies_and_the_final_checkpoint(tmp_path, monkeypatch, caplog):
    from aggregator.wandb_log import REPLY_COLUMNS, WandbRun, find_run_dir, read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "run-1"
    outputs = finished_run(out)
    caplog.set_level(logging.WARNING, logger="aggregator.wandb_log")
    wb = WandbRun.start(out, "run-1", {"rounds": 2})
    assert wb is not None and wb.mode == "offline"
    wb.log_initial(1.5)
    for entry in outputs.summary["rounds"]:
        wb.log_round(entry, {"round": 5.0})
    tx = "0x" + "7e" * 32  # round 2's record of the first wallet lands after its round was logged
    outputs.on_chain(Op(1, "0x" + "cc" * 32, "record", 2, WALLETS[0], {"node_id": 11}, "done", tx, 1, None), tx)
    wb.finish(outputs.summary)

    run_dir = find_run_dir(out)
    messages = [r.getMessage() for r in caplog.records if r.name == "aggregator.wandb_log"]
    assert messages[-1].endswith(f"wandb sync {run_dir}")  # the pointer comes last, once
    assert sum("wandb sync" in m for m in messages) == 1

    run = read_offline_run(run_dir, wait=120)
    assert run.finished
    rows = run.by_round()
    files = run_dir / "files"

    def table(row: dict, key: str) -> list[dict]:
        assert row[f"{key}/_type"] == "table-file"
        data = json.loads((files / row[f"{key}/path"]).read_text())
        assert data["columns"] == list(REPLY_COLUMNS)
        return [dict(zip(data["columns"], r, strict=True)) for r in data["data"]]

    for entry in outputs.summary["rounds"]:
        row = rows[entry["round"]]
        for seed in (1000, 1001):  # the round's rollout videos, as LeRobot logs eval/video
            assert row[f"eval/video/seed_{seed}/_type"] == "video-file"
            assert (files / row[f"eval/video/seed_{seed}/path"]).stat().st_size > 0
        for chart in ("losses", "success"):
            assert row[f"charts/{chart}/_type"] == "image-file" and (files / row[f"charts/{chart}/path"]).is_file()
        replies = table(row, "replies")
        assert [(r["node"], r["wallet"], r["status"]) for r in replies] == [
            (str(n["node_id"]), n["address"], n["status"]) for n in entry["nodes"]]
        assert replies[0]["score"] == 0.2 and replies[0]["loss before"] == 1.0
        assert row["nodes/status/HARMFUL"] == (1 if entry["round"] == 2 else 0)
        assert row["nodes/status/BAD_PROOF"] == (1 if entry["round"] == 1 else 0)
    assert table(rows[2], "replies")[0]["tx"] is None  # not landed when round 2 was logged
    final = table(rows[2], "replies_final")
    assert len(final) == 6 and [r["tx"] for r in final if r["round"] == 2 and r["node"] == "11"] == [tx]

    model = [a for a in run.artifacts if a["type"] == "model"]
    assert len(model) == 1, run.artifacts
    assert model[0]["name"] == "run-1-round_2" and set(model[0]["aliases"]) >= {"latest", "round_2"}
    assert {"model.safetensors", "config.json"} <= set(model[0]["files"])
    assert model[0]["metadata"]["round"] == 2 and model[0]["metadata"]["global_hash"] == "0x" + "02" * 32
