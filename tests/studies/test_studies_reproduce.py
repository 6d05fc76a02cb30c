"""reproduce: rows run through train(), finished rows read back, killed rows resumed, half-written
or foreign folders refused in one line, and the claims judged from the numbers."""

import json

import pytest

import mobilenets.studies.reproduce as rep
from mobilenets.cli.main import main
from mobilenets.errors import MobileNetsError


def write_metrics(folder, tops):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"epoch": i + 1, "val_top1": t}) for i, t in enumerate(tops)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def fake_train(monkeypatch):
    """train() that 'trains' a row in no time: it writes the row's metrics (top-1 set per model)."""
    calls = []
    tops = {"mobilenet_v1_0.75_224": 0.97, "mobilenet_v1_shallow_1.0_224": 0.95}

    def train(data, model, *, resolution, recipe, options, log, recipe_overrides):
        calls.append({"model": model, "resolution": resolution, "resume": options.resume, "data": data,
                      **recipe_overrides})
        from pathlib import Path

        write_metrics(Path(options.output), [0.5] * (recipe.epochs - 1) + [tops[model]])
        return {}

    monkeypatch.setattr("mobilenets.train.classify.train", train)
    return calls


def test_digits_rows_run_small_and_say_so(tmp_path, fake_train):
    r = rep.reproduce("table5", output=tmp_path / "t5", epochs=3, log=lambda *_: None)
    assert [c["resolution"] for c in fake_train] == [32, 32] and {c["epochs"] for c in fake_train} == {3}
    assert all(c["data"] is None and not c["resume"] for c in fake_train)
    assert [row["ours_top1"] for row in r["rows"]] == [97.0, 95.0]
    assert [row["paper_top1"] for row in r["rows"]] == [68.4, 65.3]
    assert r["rows"][0]["mult_adds"] == 325_400_448  # our counter, 1000 classes, 224 px
    assert r["claims"][0]["holds"] is True and "digits stand-in" in rep.reproduce_text(r)
    assert "Shallow MobileNet" in rep.reproduce_text(r)


def test_finished_rows_are_read_back_and_killed_rows_resumed(tmp_path, fake_train):
    out = tmp_path / "t5"
    rep.reproduce("table5", output=out, epochs=3, log=lambda *_: None)
    fake_train.clear()
    rep.reproduce("table5", output=out, epochs=3, log=lambda *_: None)
    assert fake_train == []  # both rows finished: nothing trained again
    # a row killed mid-run: its metrics stop early and a checkpoint is there
    shallow = out / "mobilenet_v1_shallow_1.0_224"
    write_metrics(shallow, [0.5])
    (shallow / "checkpoints").mkdir(exist_ok=True)
    (shallow / "checkpoints" / "step-21.pt").write_bytes(b"")
    r = rep.reproduce("table5", output=out, epochs=3, log=lambda *_: None)
    assert [(c["model"], c["resume"]) for c in fake_train] == [("mobilenet_v1_shallow_1.0_224", True)]
    assert r["rows"][1]["ours_top1"] == 95.0


def test_killed_rows_restart_and_foreign_folders_are_one_line(tmp_path, fake_train, capsys):
    out = tmp_path / "t5"
    rep.reproduce("table5", output=out, epochs=3, log=lambda *_: None)
    row = out / "mobilenet_v1_0.75_224"
    (row / "metrics.jsonl").unlink()
    (row / "config.json").write_text("{}")  # killed in its first epoch: no checkpoint yet
    fake_train.clear()
    # the runner's rule for such a folder (train/runner.py check_folder): resume starts it from scratch
    rep.reproduce("table5", output=out, epochs=3, log=lambda *_: None)
    assert [(c["model"], c["resume"]) for c in fake_train] == [("mobilenet_v1_0.75_224", True)]
    with pytest.raises(MobileNetsError, match=r"holds another reproduction \(epochs=3; asked epochs=4\); choose "
                                              r"another output"):
        rep.reproduce("table5", output=out, epochs=4, log=lambda *_: None)
    code = main(["reproduce", "table5", "--epochs", "4", "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another reproduction (--epochs 3; asked --epochs 4); choose another --output" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code = main(["reproduce", "table4", "--output", str(tmp_path / "other"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not empty" in err


def test_claims_are_judged_not_asserted():
    def rows(*tops):
        return [{"ours_top1": t} for t in tops]

    assert rep.judge_claims("table4", rows(98.0, 97.2))[0]["holds"] is True
    assert rep.judge_claims("table4", rows(98.0, 96.5))[0]["holds"] is False
    assert rep.judge_claims("table5", rows(96.0, 97.0))[0]["holds"] is False
    assert rep.judge_claims("table6", rows(98, 97.8, 98.1, 90))[0]["holds"] is True  # a 0.3 rise is noise
    assert rep.judge_claims("table7", rows(98, 96, 97, 90))[0]["holds"] is False
