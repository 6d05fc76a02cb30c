"""Figures 4 and 5: the sources' points, the log-linear fit, both PNGs, and run folders."""

import json

import pytest

from mobilenets.errors import MobileNetsError
from mobilenets.studies.accuracy import Predictor, loglinear_fit, paper_points, run_points, slim_points
from mobilenets.studies.figures import figures


def fake_run(folder, alpha, resolution, tops):
    folder.mkdir(parents=True)
    model = {"alpha": alpha, "resolution": resolution, "num_classes": 10}
    (folder / "config.json").write_text(json.dumps({"model": model}))
    lines = [json.dumps({"epoch": i + 1, "val_top1": t}) for i, t in enumerate(tops)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n{cut mid-wri")
    return folder


def test_fit_is_exact_on_a_log_line_and_r2_drops_with_noise():
    fit = loglinear_fit([10, 100, 1000], [50, 60, 70])
    assert fit.slope == pytest.approx(10) and fit.intercept == pytest.approx(40) and fit.r2 == pytest.approx(1)
    assert fit.predict(10_000) == pytest.approx(80)
    assert loglinear_fit([10, 100, 1000], [50, 70, 60]).r2 < 0.5
    with pytest.raises(MobileNetsError, match="two distinct"):
        loglinear_fit([5, 5], [1, 2])


def test_sources_use_our_counter_and_the_printed_accuracies():
    paper = {p.label: p for p in paper_points()}
    assert len(paper) == 7 and paper["paper 1-224"].top1 == 70.6 and paper["paper 1-224"].mult_adds == 568_740_352
    slim = slim_points()
    assert len(slim) == 16
    # parameters depend on alpha alone (Figure 5's vertical clusters)
    assert len({p.params for p in slim}) == 4
    fit = loglinear_fit([p.mult_adds for p in slim], [p.top1 for p in slim])
    assert 0.95 < fit.r2 < 1 and 15 < fit.slope < 25  # the paper's "log linear" holds for the slim table
    pred = Predictor("slim")
    assert pred.predict(1.0, 224, 1)[0] == 70.9 and pred.predict(1.0, 224, 1)[1] == "slim table"
    assert pred.predict(0.6, 200, 200e6)[1] == "fit"


def test_figures_write_both_pngs_with_runs(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "a", 0.5, 32, [0.5, 0.9])
    fake_run(runs / "b", 1.0, 32, [0.95])
    fake_run(runs / "c", 0.25, 32, [])  # no finished epoch: skipped
    fake_run(runs / "d", 0.75, 32, [0.91])
    assert [p.top1 for p in run_points([runs])] == [90.0, 95.0, 91.0]
    result = figures(tmp_path / "out", [runs])
    for fig in ("figure4", "figure5"):
        png = tmp_path / "out" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        assert set(result[fig]["fits"]) == {"paper", "slim", "runs"}
    assert result["points"] == {"paper": 7, "slim": 16, "runs": 3}
    two = figures(tmp_path / "two", [runs / "a", runs / "b"])
    assert "runs" not in two["figure4"]["fits"]  # two points: no fit (any line has R² 1)
    with pytest.raises(MobileNetsError, match="not a run folder"):
        figures(tmp_path / "out", [tmp_path / "out"])
