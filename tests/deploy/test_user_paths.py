"""Deployment as a user runs it (issue 11, item 4): int8 calibrated on the run's own photos with
its unreadable files skipped, the format from the output's suffix, and eval/predict on exported
files through ``load_runner``."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.formats import format_for_output
from mobilenets.deploy.runtime import format_of, is_exported_model, load_runner
from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_ET = importlib.util.find_spec("executorch") is not None
CLASSES = ["astronaut", "chelsea", "coffee"]  # the photo folder's classes (sorted)
_CACHE: dict[str, object] = {}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mobilenet: error: "), err
    return err[0]


@pytest.fixture
def photo_run(photo_folder, tmp_path_factory):
    """A run trained (briefly) by `mobilenet train`'s function on a folder of real photos with 3
    unreadable files in train/coffee; built once per module: ``(run folder, data folder)``."""
    if "run" not in _CACHE:
        from mobilenets.train.classify import train
        from mobilenets.train.options import TrainOptions

        root = tmp_path_factory.mktemp("photos")
        data = photo_folder(root / "data", size=48, per_class=(6, 2))  # 18 + 3 bad train, 6 val
        train(str(data), alpha=0.25, resolution=32, recipe_overrides={"epochs": 1, "batch_size": 8},
              options=TrainOptions(output=str(root / "run"), progress=False), log=lambda _m: None)
        _CACHE["run"] = (root / "run", data)
    return _CACHE["run"]


@pytest.fixture
def confident(randomized_bn, tmp_path_factory):
    """A model folder (the 3 photo classes, logits of O(10), so predictions differ by image) and
    its fp32 ONNX export; built once per module: ``(model folder, export)``."""
    if "confident" not in _CACHE:
        from mobilenets.weights.checkpoint import save_model

        root = tmp_path_factory.mktemp("confident")
        model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=3), classifier_std=1.0)
        folder = save_model(model, root / "model", classes=CLASSES)
        export_model(str(folder), root / "m.onnx")
        _CACHE["confident"] = (folder, root / "m.onnx")
    return _CACHE["confident"]


# --------------------------------------------------------------------------- 1. calibration data


def test_int8_calibrates_on_the_runs_own_folder_and_skips_unreadable_files(photo_run, tmp_path):
    run, data = photo_run
    report = export_model(str(run), tmp_path / "own-int8.onnx", int8=True)
    q, check = report["quantization"], report["check"]
    # train/ calibrates (18 readable, 3 unreadable skipped), val/ checks (6): not the digits
    assert q["calibration"].startswith(str(data)) and "3 unreadable image(s) skipped" in q["calibration"]
    assert q["calibration_images"] == 18
    assert check["inputs"].startswith("6 held-out images (") and "digits" not in check["inputs"]
    assert check["accuracy_int8"] is not None  # val/'s class folders are the model's classes
    # Passing the training folder itself (as a user would) goes the same way instead of failing
    # on the first unreadable JPEG.
    from mobilenets.deploy.calibration import calibration_images
    from mobilenets.deploy.sources import resolve_source

    given = calibration_images(data, resolve_source(str(run)), 32)
    assert given.source == q["calibration"] and (len(given.calibration), len(given.check)) == (18, 6)
    assert len(given.skipped) == 3 and given.check_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_calibration_images_skip_bad_files_in_a_flat_folder(photo_run):
    from mobilenets.deploy.calibration import calibration_images
    from mobilenets.deploy.sources import resolve_source

    run, data = photo_run
    source = resolve_source(str(run))
    images = calibration_images(data / "train" / "coffee", source, 32)  # 6 photos + 3 unreadable
    assert len(images.calibration) + len(images.check) == 6 and len(images.check) == 1
    assert sorted(os.path.basename(p) for p, _ in images.skipped) == ["empty.jpg", "notes.jpg", "truncated.jpg"]
    assert images.source == f"{data / 'train' / 'coffee'}: 3 unreadable image(s) skipped"
    few = data.parent / "few"
    few.mkdir()
    (few / "a.jpg").write_bytes((data / "val" / "coffee" / "0.jpg").read_bytes())
    (few / "b.jpg").write_bytes(b"")
    with pytest.raises(MobileNetsError, match=r"holds 1 readable image\(s\) \(1 unreadable skipped\); need at least 2"):
        calibration_images(few, source, 32)


def test_int8_without_known_data_is_refused_in_one_line(confident, tmp_path, capsys):
    folder, _ = confident  # a model folder records no training data
    with pytest.raises(MobileNetsError, match=r"has no recorded training data; pass calibration=FOLDER"):
        export_model(str(folder), tmp_path / "m.onnx", int8=True)
    assert main(["export", "--checkpoint", str(folder), "--int8", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "has no recorded training data; pass --calibration FOLDER" in _one_error_line(capsys)
    with pytest.raises(MobileNetsError, match=r"model object has no recorded training data"):
        export_model(MobileNet(alpha=0.25, resolution=32, num_classes=3), tmp_path / "o.onnx", int8=True)
    assert os.listdir(tmp_path) == []
    # the digits, asked for by name, are still there for any model (unlabelled for this one)
    from mobilenets.deploy.calibration import calibration_images
    from mobilenets.deploy.sources import resolve_source

    digits = calibration_images("digits", resolve_source(str(folder)), 32, limit=20)
    assert digits.source == "digits" and len(digits.calibration) == 20 and digits.check_labels is None


# --------------------------------------------------------------------------- 2. format from the suffix


def test_format_for_output_follows_the_suffix_and_refuses_contradictions():
    assert format_for_output("a/guess.tflite") == "tflite"
    assert format_for_output("m.PTE") == "executorch"
    assert [format_for_output(f"m{s}") for s in (".pt", ".ts", ".torchscript")] == ["torchscript"] * 3
    assert format_for_output("model.bin", "onnx") == "onnx"  # a name of no format: the format given
    with pytest.raises(MobileNetsError, match=r"x.tflite is named like a tflite file but format='onnx'"):
        format_for_output("x.tflite", "onnx")
    with pytest.raises(MobileNetsError, match=r"cannot tell the format from the file name m.bin: end it in "
                                              r"\.onnx, \.tflite, \.pte, \.pt, \.ts, \.torchscript"):
        format_for_output("m.bin")


def test_cli_refuses_a_format_the_output_contradicts(tmp_path, capsys):
    model = ["--alpha", "0.25", "--resolution", "32", "--num-classes", "3"]
    for flags, needle in [(["--format", "onnx", "--output", str(tmp_path / "x.tflite")],
                           f"--format onnx contradicts --output {tmp_path / 'x.tflite'} (a tflite file name)"),
                          (["--output", str(tmp_path / "x.bin")], "cannot tell the format from --output"),
                          (["--int8", "--output", str(tmp_path / "x.pt")], "--int8 is not offered for torchscript")]:
        assert main(["export", *model, *flags]) == 2
        assert needle in _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_load_runner_opens_every_torchscript_suffix_and_tells_formats_by_content(randomized_bn, photo_run,
                                                                                   confident, tmp_path):
    model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=3), classifier_std=1.0)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = tmp_path / "m.torchscript"
    assert export_model(model, out)["format"] == "torchscript"
    for suffix in (".torchscript", ".pt", ".ts"):
        copy = out.with_suffix(suffix)
        if copy != out:
            copy.write_bytes(out.read_bytes())
        runner = load_runner(copy)
        assert runner.format == "torchscript" and is_exported_model(copy)
        # export's fp32 limit, relative to the logits (O(10) here; measured 9e-6 of the largest)
        np.testing.assert_allclose(runner(x), ref, atol=FP32_TOLERANCE * max(1.0, float(np.abs(ref).max())), rtol=0)
    for path, fmt in ((out, "torchscript"), (confident[1], "onnx")):  # renamed: told by content
        renamed = tmp_path / f"renamed-{fmt}.model"
        renamed.write_bytes(path.read_bytes())
        assert format_of(renamed) == fmt and is_exported_model(renamed) and load_runner(renamed).format == fmt
    # a training checkpoint is also .pt (a zip too): not an export, eval/predict read it as a checkpoint
    state = sorted((photo_run[0] / "checkpoints").glob("step-*.pt"))[-1]
    assert not is_exported_model(state)
    with pytest.raises(MobileNetsError, match="is not a TorchScript export"):
        load_runner(state)


# --------------------------------------------------------------------------- 3. eval and predict


def test_eval_and_predict_run_exported_files_like_checkpoints(confident, photo_run, capsys):
    folder, onnx_file = confident
    _run, data = photo_run
    args = ["--data", str(data), "--no-progress", "--json"]
    assert main(["eval", "--checkpoint", str(folder), *args]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(onnx_file), *args]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == set(ref) and got["checkpoint"] == str(onnx_file) and got["data"] == ref["data"]
    assert got["images"] == ref["images"] == 6
    assert (got["top1"], got["top5"]) == (ref["top1"], ref["top5"])
    assert got["loss"] == pytest.approx(ref["loss"], abs=1e-4)
    image = str(data / "val" / "chelsea" / "1.jpg")
    assert main(["predict", "--checkpoint", str(folder), "--json", image]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["predict", "--checkpoint", str(onnx_file), "--json", image]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in predicted[0]["top"]] == [p["label"] for p in expected[0]["top"]]
    assert {p["label"] for p in predicted[0]["top"]} == set(CLASSES)
    for a, b in zip(predicted[0]["top"], expected[0]["top"]):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
    # a model folder records no training data: eval needs --data, said in one line
    assert main(["eval", "--checkpoint", str(folder), "--no-progress"]) == 2
    assert "records no training data to evaluate on; pass data=DIR" in _one_error_line(capsys)


def test_eval_matches_class_folders_by_name(confident, photo_run, tmp_path):
    """A validation folder holding some of the model's classes is scored by class name; one with
    a class the model lacks is refused."""
    import shutil

    from mobilenets.train.classify import eval_checkpoint

    folder, onnx_file = confident
    _run, data = photo_run
    sub = tmp_path / "sub"
    for split in ("train", "val"):
        shutil.copytree(data / split / "coffee", sub / split / "coffee")
    got = eval_checkpoint(str(onnx_file), str(sub))
    x, y = _val_arrays(sub, folder)
    assert y.tolist() == [2, 2]  # coffee is the model's class 2, the data's class 0
    assert got["images"] == 2 and got["top1"] == pytest.approx(float((load_runner(onnx_file)(x).argmax(1) == y).mean()))
    (sub / "train" / "dog").mkdir()
    shutil.copy(data / "val" / "coffee" / "0.jpg", sub / "train" / "dog" / "0.jpg")
    with pytest.raises(MobileNetsError, match=r"class folders 'dog' are not among the model's 3 classes"):
        eval_checkpoint(str(onnx_file), str(sub))


def _val_arrays(root, model_folder):
    """The val images of ``root`` preprocessed as the model folder says, labelled by class name."""
    from PIL import Image

    from mobilenets.data.augment import Augment
    from mobilenets.data.transforms import eval_transform
    from mobilenets.weights.checkpoint import load_checkpoint

    model, meta = load_checkpoint(model_folder)
    transform = eval_transform(32, Augment.for_eval(meta))
    xs, ys = [], []
    for cls in sorted(os.listdir(root / "val")):
        for f in sorted(os.listdir(root / "val" / cls)):
            with Image.open(root / "val" / cls / f) as im:
                xs.append(transform(im.convert("RGB")).numpy())
            ys.append(CLASSES.index(cls))
    return np.stack(xs), np.array(ys)


@pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")
def test_cli_int8_tflite_by_its_suffix_then_eval_prints_the_same_json_as_the_checkpoint(photo_run, tmp_path, capsys):
    run, data = photo_run
    out = tmp_path / "model-int8.tflite"
    # no --format: the suffix says TFLite (this wrote ONNX under the .tflite name before)
    assert main(["export", "--checkpoint", str(run), "--int8", "--output", str(out)]) == 0
    assert ", int8, tflite)" in capsys.readouterr().out
    assert out.read_bytes()[4:8] == b"TFL3" and load_runner(out).format == "tflite"
    assert json.loads((tmp_path / "model-int8.tflite.json").read_text())["format"] == "tflite"
    assert main(["eval", "--checkpoint", str(run), "--data", str(data), "--no-progress", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(out), "--data", str(data), "--no-progress", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == set(ref) and got["images"] == ref["images"] == 6
    assert 0 <= got["top1"] <= got["top5"] <= 1
    # without --data: the data the run was trained on, as for the checkpoint
    assert main(["eval", "--checkpoint", str(out), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == str(data)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ET, reason="executorch not installed")
def test_eval_of_executorch_and_torchscript_files(confident, photo_run, tmp_path, capsys):
    folder, _ = confident
    _run, data = photo_run
    assert main(["eval", "--checkpoint", str(folder), "--data", str(data), "--no-progress", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    for name in ("m.pte", "m.pt"):
        out = tmp_path / name
        export_model(str(folder), out)
        assert main(["eval", "--checkpoint", str(out), "--data", str(data), "--no-progress", "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert set(got) == set(ref) and (got["top1"], got["top5"], got["images"]) == (ref["top1"], ref["top5"], 6)
        assert got["loss"] == pytest.approx(ref["loss"], abs=1e-4)
