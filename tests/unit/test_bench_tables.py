"""The benchmark scripts' tables: what docs/fed-vs-central.md shows is what the runs measured, step for step."""

from __future__ import annotations

from scripts.fed_vs_central import curve_table, plot_curves


def test_learning_curves_line_up_by_optimizer_steps(tmp_path):
    curves = {"federated": [[1600, 0.31], [9600, 0.1118]],
              "centralized": [[1600, 0.161], [3200, 0.112], [9600, 0.0555]]}
    rows = curve_table(curves).splitlines()
    assert rows[0] == "| held-out loss (all frames) at optimizer steps | 1,600 | 3,200 | 9,600 |"
    assert rows[2] == "| federated | 0.3100 | - | 0.1118 |"  # a step one run has not measured stays empty
    assert rows[3] == "| centralized | 0.1610 | 0.1120 | 0.0555 |"
    plot_curves(curves, tmp_path / "heldout.png")
    assert (tmp_path / "heldout.png").stat().st_size > 0


def test_a_success_rate_is_shown_with_its_interval():
    from scripts.fed_vs_central import closed_loop_cell

    assert closed_loop_cell({"success_rate": 0.05, "sim_eval_episodes": 100}) == "5% (2.2%-11.2%, 100 seeds)"
    assert closed_loop_cell({"success_rate": 0.3}) == "30%"  # rows stored before the count was kept
    assert closed_loop_cell({}) == "-"
