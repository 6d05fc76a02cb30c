"""Our checkpoints: the model folder round trip (and its older format), the timm-style
``pretrained_cfg`` every loaded model carries, and one clear error line for every file that is not
what its name says (never a traceback from torch or safetensors, never code run from a pickle)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenets import MobileNet, MobileNetConfig, load_model, save_model
from mobilenets.cli.main import main
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.weights.checkpoint import load_checkpoint, load_state, save_state, save_weights


def _logits(model: MobileNet, seed: int, resolution: int) -> np.ndarray:
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (2, 3, resolution, resolution)).astype(np.float32))
    with torch.no_grad():
        return model.eval()(x).numpy()


def _small(alpha: float = 0.25, resolution: int = 64, num_classes: int = 5) -> MobileNet:
    return MobileNet(MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=num_classes,
                                     activation="relu6", padding="tf_same"))


# --- the model folder ------------------------------------------------------------------------------

def test_save_load_model_round_trip(tmp_path, randomized_bn):
    model = randomized_bn(_small(), 700, classifier_std=0.5).train()
    folder = save_model(model, tmp_path / "m", classes=list("abcde"))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(folder)
    assert loaded.config == model.config and not loaded.training
    assert loaded.pretrained_cfg["label_names"] == list("abcde")
    assert np.array_equal(_logits(loaded, 8, 64), _logits(model, 8, 64))
    doc = json.loads((folder / "config.json").read_text())
    assert doc["format_version"] == 2 and doc["classes"] == list("abcde")
    assert doc["preprocessing"] == Preprocessing().at(64).to_dict()  # timm's keys, at the model's resolution
    # the folder's config.json is authoritative
    doc["model"]["num_classes"] = 7
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(MobileNetsError, match="do not fit the model its config describes"):
        load_model(folder)


def test_load_model_feeds_timm_resolve_data_config(tmp_path):
    from timm.data import resolve_data_config

    pre = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.9,
                        interpolation="bicubic", input_size=(3, 64, 64))
    folder = save_model(_small(), tmp_path / "m", preprocessing=pre, classes=list("abcde"))
    model = load_model(folder)
    got = resolve_data_config(model=model)
    assert (got["mean"], got["std"], got["crop_pct"], got["input_size"], got["interpolation"]) == \
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.9, (3, 64, 64), "bicubic")
    cfg = model.pretrained_cfg  # flat, timm's layout: no nested "preprocessing"
    assert cfg["num_classes"] == 5 and cfg["label_names"] == list("abcde") and "preprocessing" not in cfg
    # the carried cfg is what save_model writes again
    again = json.loads((save_model(model, tmp_path / "again") / "config.json").read_text())
    assert Preprocessing.from_dict(again["preprocessing"]) == pre and again["classes"] == list("abcde")
    with pytest.raises(MobileNetsError, match=r"input_size \(3, 96, 96\) does not match the model's resolution 64"):
        save_model(_small(), tmp_path / "bad", preprocessing=pre.at(96))


def test_old_model_folder_with_crop_fraction_is_read(tmp_path):
    model = _small()
    folder = save_model(model, tmp_path / "old")
    doc = json.loads((folder / "config.json").read_text())
    doc["format_version"] = 1  # what 0.1 wrote: crop_fraction, pixel_range, no input_size
    doc["preprocessing"] = {"pixel_range": [0.0, 1.0], "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2],
                            "input_range": [-2.0, 3.0], "crop_fraction": 0.8, "interpolation": "bicubic"}
    (folder / "config.json").write_text(json.dumps(doc))
    loaded, meta = load_checkpoint(folder)
    pre = Preprocessing.from_dict(loaded.pretrained_cfg)
    assert (pre.crop_pct, pre.mean, pre.interpolation, pre.input_size) == (0.8, (0.4,) * 3, "bicubic", (3, 64, 64))
    # the run-style keys eval/predict/export read
    assert (meta["eval_crop"], meta["mean"], meta["std"]) == (0.8, [0.4] * 3, [0.2] * 3)
    rewritten = json.loads((save_model(loaded, tmp_path / "new") / "config.json").read_text())
    assert rewritten["preprocessing"]["crop_pct"] == 0.8 and "crop_fraction" not in rewritten["preprocessing"]


def test_run_checkpoints_carry_their_preprocessing(tmp_path):
    from timm.data import resolve_data_config

    model = _small(num_classes=3)
    run = {"classes": ["a", "b", "c"], "mean": [0.3, 0.3, 0.3], "std": [0.25, 0.25, 0.25], "eval_crop": 0.75}
    save_weights(model, tmp_path / "run" / "best.safetensors", model.config, {"run": json.dumps(run)})
    save_state({"model": model.state_dict(), "model_config": model.config.to_json(), "run": json.dumps(run)},
                tmp_path / "state.pt")
    for path in (tmp_path / "run", tmp_path / "state.pt"):
        loaded = load_model(path)
        got = resolve_data_config(model=loaded)
        assert (got["mean"], got["crop_pct"], got["input_size"]) == ((0.3,) * 3, 0.75, (3, 64, 64)), path
        assert loaded.pretrained_cfg["label_names"] == ["a", "b", "c"]
        assert np.array_equal(_logits(loaded, 1, 64), _logits(model, 1, 64))


# --- files that are not what their names say ---------------------------------------------------------

def _zip_not_torch(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a tensor")


BAD_FILES = {
    # name: (write it, what the error says besides the file name and what was expected)
    "text.pt": (lambda p: p.write_text("epoch 3: loss 0.25\n"), "it is a text file"),
    "empty.pt": (lambda p: p.write_bytes(b""), "the file is empty"),
    "archive.pt": (_zip_not_torch, "a zip archive but not a torch file"),
    "binary.pth": (lambda p: p.write_bytes(bytes(range(1, 200))), "neither a zip archive nor a pickle"),
    "garbage.safetensors": (lambda p: p.write_bytes(b"this is not a safetensors header at all"), "header"),
    "empty.safetensors": (lambda p: p.write_bytes(b""), "the file is empty"),
    "model.onnx": (lambda p: p.write_bytes(b"\x08\x07"), "unknown checkpoint format '.onnx'"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_checkpoint_files_give_one_clear_error(tmp_path, capsys, name):
    write, why = BAD_FILES[name]
    path = tmp_path / name
    write(path)
    expected = "expected a safetensors file" if name.endswith(".safetensors") else \
        "expected a file written by torch.save" if ".pt" in name else "expected a model folder"
    with pytest.raises(MobileNetsError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and why in message and expected in message, message
    assert "\n" not in message
    if name.endswith((".pt", ".pth")):
        with pytest.raises(MobileNetsError, match=why):
            load_state(path)
    # every command that takes a checkpoint says the same on one line (an .onnx file is an exported
    # model to `predict`, so its one line comes from ONNX Runtime's loader instead)
    assert main(["predict", "--checkpoint", str(path), "x.jpg"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    if name.endswith(".onnx"):
        assert len(lines) == 1 and lines[0].startswith(f"mobilenet: error: cannot load ONNX model {path}"), lines
    else:
        assert lines == [f"mobilenet: error: {message}"]


def test_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(MobileNetsError, match="no checkpoint in folder"):
        load_checkpoint(tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_convert",))


def test_convert_malicious_pickle_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"conv_stem.weight": _Evil()}, fh)
    proc = subprocess.run([sys.executable, "-m", "mobilenets", "convert", str(evil), "--from", "timm",
                           "--output", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mobilenet: error: refusing to load"), proc.stderr
    assert not (tmp_path / "pwned_by_convert").exists()
    assert not (tmp_path / "out").exists()


def test_convert_truncated_safetensors(tmp_path, capsys):
    model = MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3, activation="relu6"))
    save_model(model, tmp_path / "m")
    data = (tmp_path / "m" / "model.safetensors").read_bytes()
    (tmp_path / "m" / "model.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    for argv in (["convert", str(tmp_path / "m"), "--from", "mobilenets"],
                 ["convert", str(tmp_path / "w.safetensors"), "--from", "timm"]):
        assert main(argv + ["--output", str(tmp_path / "out")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mobilenet: error: cannot read weights"), lines
    assert not (tmp_path / "out").exists()


# --- the commands that read checkpoints ------------------------------------------------------------

def _photo_folder(root: Path, size: int = 48) -> None:
    from PIL import Image
    from skimage import data as skd

    photos = {"astronaut": skd.astronaut(), "chelsea": skd.chelsea(), "coffee": skd.coffee()}
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, img in photos.items():
            d = root / split / name
            d.mkdir(parents=True)
            h, w = img.shape[:2]
            for i in range(2):
                y, x = rng.integers(0, h - 160), rng.integers(0, w - 160)
                Image.fromarray(img[y:y + 160, x:x + 160]).resize((size, size)).save(d / f"{i}.jpg")


def test_cli_eval_and_predict_accept_model_folder(tmp_path, capsys):
    _photo_folder(tmp_path / "data")
    model = MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3))
    save_model(model, tmp_path / "m", classes=["astronaut", "chelsea", "coffee"])
    assert main(["eval", "--checkpoint", str(tmp_path / "m"), "--data", str(tmp_path / "data"),
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 6 and 0 <= result["top1"] <= result["top5"] <= 1
    assert main(["predict", "--checkpoint", str(tmp_path / "m"), "--json", "--top-k", "3",
                 str(tmp_path / "data" / "val" / "coffee" / "0.jpg")]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert {p["label"] for p in pred[0]["top"]} == {"astronaut", "chelsea", "coffee"}
