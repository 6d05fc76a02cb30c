"""`mobilenet geo standin|cells|train|predict|eval` end to end on a tiny stand-in, the stand-in
itself, the task's loss and metrics, and (slow) the acceptance run against the biggest-cell baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.tasks.geo.cells import CellPartition, partition, read_cells
from mobilenets.tasks.geo.evaluate import THRESHOLDS_KM, haversine_km
from mobilenets.tasks.geo.standin import render, write_standin
from mobilenets.tasks.geo.task import GeoTask, train
from mobilenets.train.options import TrainOptions
from mobilenets.utils.scoped import torch_threads


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo") / "standin"
    write_standin(root, photos=200, places=12, size=32, seed=1)
    return root


def test_standin_is_deterministic_and_looks_like_its_place(tmp_path, standin):
    again = write_standin(tmp_path / "again", photos=200, places=12, size=32, seed=1)
    assert (standin / "train.csv").read_text() == (tmp_path / "again" / "train.csv").read_text()
    assert (standin / "images" / "000007.jpg").read_bytes() == (tmp_path / "again" / "images" / "000007.jpg").read_bytes()
    assert again["train_photos"] == 160 and again["val_photos"] == 40
    other = write_standin(tmp_path / "other", photos=20, places=12, size=32, seed=2)
    assert (tmp_path / "other" / "train.csv").read_text() != (standin / "train.csv").read_text()
    assert other["photos"] == 20
    # place shows: the tint follows longitude (same rng draws, different place)
    a = render(10.0, -100.0, "EU", 1, 48, np.random.default_rng(5)).astype(float).mean(axis=(0, 1))
    b = render(10.0, 60.0, "EU", 1, 48, np.random.default_rng(5)).astype(float).mean(axis=(0, 1))
    assert np.abs(a - b).max() > 20
    with pytest.raises(MobileNetsError, match="already holds"):
        write_standin(standin, photos=20)
    with pytest.raises(MobileNetsError):
        write_standin(tmp_path / "x", photos=1)


def test_loss_and_metrics_by_hand():
    cells = CellPartition.from_tokens(["89", "8b", "8d"], [5, 9, 2], [10.0, 20.0, 30.0], [0.0, 0.0, 0.0])
    task = GeoTask(MobileNetConfig(alpha=0.25, resolution=32), cells)
    assert task.config.num_classes == 3 and task.monitor == "median_km"
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    targets = {"cell": torch.tensor([0, 2, -1, -1]),
               "latlon": torch.tensor([[10.0, 0.0], [30.0, 0.0], [31.0, 0.0], [12.0, 0.0]], dtype=torch.float64)}
    loss = task.loss(logits, targets)["loss"]
    want = torch.nn.functional.cross_entropy(logits[:2], targets["cell"][:2])
    assert torch.allclose(loss, want)
    assert float(task.loss(logits, {"cell": torch.tensor([-1, -1, -1, -1]), "latlon": targets["latlon"]})["loss"]) == 0
    metrics = task.new_metrics()
    metrics.update(logits, targets)
    m = metrics.compute()
    km = 6371.0 * np.pi / 180
    assert m["top1"] == 0.5 and m["images"] == 4
    # errors 0, 10, 1 and 2 degrees of a meridian
    assert m["within_1km"] == 0.25 and m["within_200km"] == 0.5 and m["within_750km"] == 0.75
    assert m["within_2500km"] == 1.0
    assert m["median_km"] == pytest.approx(1.5 * km) and m["loss"] == pytest.approx(float(want))
    assert "cell top-1 50.0%" in task.describe(m)


def test_geo_commands_end_to_end(standin, tmp_path, capsys):
    cells_csv = tmp_path / "cells.csv"
    assert main(["geo", "cells", "--photos", str(standin / "train.csv"), "--max-per-cell", "40", "--min-per-cell",
                 "4", "--max-level", "14", "--output", str(cells_csv), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    cells = read_cells(cells_csv)
    assert summary["cells"] == len(cells) >= 4 and (tmp_path / "cells.png").is_file()
    # a row whose image is gone: skipped at start, listed in the run folder, said once
    train_csv = tmp_path / "train.csv"
    train_csv.write_text((standin / "train.csv").read_text().replace("images/", str(standin / "images") + "/")
                         + "gone.jpg,10,10\n")
    run = tmp_path / "run"
    with torch_threads(1):
        code = main(["geo", "train", "--data", str(train_csv), "--val", str(standin / "val.csv"), "--cells",
                     str(cells_csv), "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "32",
                     "--output", str(run), "--no-progress"])
        assert code == 0
        out = capsys.readouterr().out
        assert "skipped 1 of 161 rows" in out and "skipped_rows.csv" in out and "biggest cell" in out
        assert "gone.jpg" in (run / "skipped_rows.csv").read_text()
        config = json.loads((run / "config.json").read_text())
        assert config["task"] == "geolocation" and config["classes"] == cells.tokens
        assert config["model"]["num_classes"] == len(cells) and config["model"]["alpha"] == 0.25
        record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert {f"val_within_{t}km" for t in THRESHOLDS_KM} <= set(record) and "val_median_km" in record
        said = []  # resuming takes the data, cells, model and recipe from the run (here: nothing left to do)
        resumed = train(None, None, None, options=TrainOptions(output=str(run), resume=True, progress=False),
                        log=said.append)
        assert resumed["cells"] == len(cells) and resumed["steps"] == record["step"] and resumed["epochs"] == 1
        assert any("nothing left to train" in line for line in said)

        image = str(standin / "images" / "000003.jpg")
        assert main(["geo", "predict", "--checkpoint", str(run), image, "--top-k", "3", "--json",
                     "--output", str(tmp_path / "pred.csv")]) == 0
        pred = json.loads(capsys.readouterr().out)[0]
        assert len(pred["top"]) == 3
        probs = [t["probability"] for t in pred["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        k = cells.tokens.index(pred["top"][0]["cell"])
        assert (pred["latitude"], pred["longitude"]) == pytest.approx((cells.mean_lat[k], cells.mean_lon[k]), abs=1e-5)
        assert main(["geo", "predict", "--checkpoint", str(run), image, "--centre", "--json"]) == 0
        centre = json.loads(capsys.readouterr().out)[0]
        assert centre["top"][0]["cell"] == pred["top"][0]["cell"]
        assert (centre["latitude"], centre["longitude"]) == pytest.approx(tuple(c[k] for c in cells.centres()), abs=1e-9)

        assert main(["geo", "eval", "--checkpoint", str(run), "--json", "--no-progress"]) == 0
        m = json.loads(capsys.readouterr().out)
        assert set(m) == {"1", "25", "200", "750", "2500", "median_km", "n"} and m["n"] == 40
        assert main(["geo", "eval", "--checkpoint", str(run), "--no-progress"]) == 0
        text = capsys.readouterr().out
        assert "biggest cell" in text and "PlaNet MobileNet" in text and (run / "geo_eval_cdf.png").is_file()
    # the prediction file scores like the photo it names
    truth = tmp_path / "truth.csv"
    row = [r for r in (standin / "train.csv").read_text().splitlines() if r.startswith("images/000003.jpg")]
    row = row or [r for r in (standin / "val.csv").read_text().splitlines() if r.startswith("images/000003.jpg")]
    lat, lon = map(float, row[0].split(",")[1:])
    truth.write_text(f"path,latitude,longitude\n{image},{lat},{lon}\n")
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(tmp_path / "pred.csv"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 1 and m["median_km"] == pytest.approx(
        float(haversine_km(lat, lon, pred["latitude"], pred["longitude"])), abs=1e-3)


def test_geo_usage_errors(standin, tmp_path, capsys):
    assert main(["geo", "train", "--data", str(standin / "train.csv")]) == 2
    assert "needs --data, --val and --cells" in capsys.readouterr().err
    assert main(["geo", "eval", "--checkpoint", "x", "--truth", "y"]) == 2
    assert main(["geo", "cells", "--photos", str(standin / "train.csv"), "--max-per-cell", "5", "--min-per-cell",
                 "9", "--output", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--min-per-cell (9) must not exceed --max-per-cell (5)" in err[1]
    (tmp_path / "fake").mkdir()
    assert main(["geo", "predict", "--checkpoint", str(tmp_path / "fake"), str(standin / "images" / "000001.jpg")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_model_beats_the_biggest_cell_at_every_threshold(tmp_path):
    """The acceptance run, smaller (the README figures are the full-size run): measured 205 s of CPU, 40 min
    wall while ~10 processes shared the 2 cores."""
    from mobilenets.tasks.geo.cells import write_cells
    from mobilenets.tasks.geo.data import read_photos

    write_standin(tmp_path / "s", photos=3000, places=60, size=48, seed=0)
    photos = read_photos(tmp_path / "s" / "train.csv", check_images=False)
    cells, _ = partition(photos.lat, photos.lon, 120, 12, 2, 16)
    write_cells(cells, tmp_path / "cells.csv")
    with torch_threads(1):
        summary = train(str(tmp_path / "s" / "train.csv"), str(tmp_path / "s" / "val.csv"), str(tmp_path / "cells.csv"),
                        alpha=0.5, resolution=48, recipe_overrides=dict(epochs=12, batch_size=64),
                        options=TrainOptions(output=str(tmp_path / "run"), progress=False))
    m, base = summary["metrics"], summary["baseline"]
    for t in THRESHOLDS_KM:
        assert m[f"within_{t}km"] > base[str(t)], (t, m, base)
    assert m["median_km"] < base["median_km"]
