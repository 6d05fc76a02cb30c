"""``mobilenet distill`` and ``mobilenet faces crop``: bad input is one line and exit 2; a tiny run."""

from __future__ import annotations

import json

import pytest

from mobilenets.cli.main import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    ((), "distill needs --teacher and --data"),
    (("--teacher", "dlib", "--data", "x", "--task", "classify", "--pairs", "p.txt"), "--pairs goes with --task embedding"),
    (("--teacher", "missing-folder", "--data", "."), "teacher not found: missing-folder"),
    (("--teacher", "x.parquet", "--data", "."), "precomputed teacher outputs not found: x.parquet"),
    (("--teacher", "dlib", "--data", "x", "--celeba", "c"), "--celeba goes with --task multilabel"),
    (("--teacher", "dlib", "--data", ".", "--task", "embedding", "--label-weight", "0.5"),
     "--label-weight is for --task classify"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, "distill", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_empty_folder_and_mismatched_teacher(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "distill", "--teacher", "age-gender", "--data", str(tmp_path / "empty"),
                           "--task", "multilabel", "--output", str(tmp_path / "run"))
    assert code == 2 and "no images found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    from mobilenets.data.photos import write_crops

    write_crops(tmp_path / "faces", 4, photos=["astronaut"], size=64)
    code, _, err = run_cli(capsys, "distill", "--teacher", "age-gender", "--data", str(tmp_path / "faces"),
                           "--task", "embedding", "--val-every", "2", "--output", str(tmp_path / "run"))
    assert code == 2 and "gives probabilities, not an embedding" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"no")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    code, _, err = run_cli(capsys, "distill", "--teacher", "age-gender", "--data", str(tmp_path / "bad"),
                           "--task", "multilabel", "--val-every", "2", "--output", str(tmp_path / "run"))
    assert code == 2 and "none of the 1 image(s)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_multilabel_run_json(capsys, tmp_path):
    from mobilenets.data.photos import write_crops

    write_crops(tmp_path / "faces", 6, photos=["astronaut", "grace_hopper"], size=64)
    code, out, err = run_cli(capsys, "distill", "--teacher", "age-gender", "--data", str(tmp_path / "faces"),
                             "--task", "multilabel", "--alpha", "0.25", "--resolution", "32", "--epochs", "1",
                             "--batch-size", "5", "--val-every", "3", "--output", str(tmp_path / "run"),
                             "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["task"] == "multilabel" and summary["epochs"] == 1 and "mean_ap" in summary["metrics"]
    assert summary["model"]["num_classes"] == 5
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_faces_crop(capsys, tmp_path):
    pytest.importorskip("dlib")
    from mobilenets.data.photos import load_photo

    (tmp_path / "in" / "sub").mkdir(parents=True)
    load_photo("astronaut").save(tmp_path / "in" / "sub" / "astronaut.jpg")
    load_photo("coffee").resize((200, 150)).save(tmp_path / "in" / "coffee.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"x")
    code, out, err = run_cli(capsys, "faces", "crop", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                             "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["photos"] == 3 and summary["faces"] >= 1 and summary["photos_without_faces"] == 1
    assert [p for p, _ in summary["unreadable"]] == ["broken.jpg"]
    from PIL import Image

    with Image.open(tmp_path / "out" / "sub" / "astronaut_0.jpg") as im:
        assert im.size == (150, 150)


def test_init_narrows_the_teacher_into_the_student(capsys, tmp_path):
    """--init: the student starts from a wider MobileNet's weights (here the teacher's), narrowed,
    with its padding and activation and the student's own BN momentum."""
    import torch

    from mobilenets.data.photos import write_crops
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.tasks.distill.run import load_student
    from mobilenets.weights.checkpoint import save_model

    torch.manual_seed(0)
    wide = MobileNet(MobileNetConfig(alpha=0.5, resolution=32, num_classes=4, padding="tf_same",
                                     activation="relu6", bn_momentum=0.0003))
    teacher = save_model(wide.eval(), tmp_path / "teacher")
    write_crops(tmp_path / "data", 6, photos=["astronaut", "coffee"], size=48)
    code, out, err = run_cli(capsys, "distill", "--teacher", str(teacher), "--data", str(tmp_path / "data"),
                             "--init", str(teacher), "--alpha", "0.25", "--resolution", "32", "--epochs", "1",
                             "--batch-size", "5", "--val-every", "3", "--output", str(tmp_path / "run"),
                             "--no-progress", "--json")
    assert code == 0, err
    assert "alpha 0.5 narrowed to 0.25" in err
    student, meta = load_student(tmp_path / "run")
    cfg = student.config
    assert (cfg.alpha, cfg.padding, cfg.activation, cfg.bn_momentum, cfg.num_classes) == (
        0.25, "tf_same", "relu6", 0.1, 4)
    assert meta["init"] == str(teacher)
    code, _, err = run_cli(capsys, "distill", "--teacher", str(teacher), "--data", str(tmp_path / "data"),
                           "--init", str(teacher), "--alpha", "0.75", "--output", str(tmp_path / "run2"))
    assert code == 2 and "wider than the source" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run2").exists()
