"""``detect_format``: which converter reads a source when the caller names none, from each
format's suffix and, where that is ambiguous or missing, its content. Tiny files made here; no
TensorFlow needed."""

from __future__ import annotations

import json
import zipfile
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from mobilenets.cli.main import main
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.weights.checkpoint import load_model, save_model, save_state, save_weights
from mobilenets.weights.convert import FORMATS, convert, detect_format

TFLITE_HEAD = b"\x1c\x00\x00\x00TFL3"  # a FlatBuffer's root offset, then TFLite's identifier
HDF5_HEAD = b"\x89HDF\r\n\x1a\n"


@pytest.fixture
def tiny():
    return MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3, activation="relu6")).eval()


def _files(root, tiny) -> dict[str, str]:
    """One source of each kind under ``root``: name -> the format it must be detected as."""
    (root / "model.tflite").write_bytes(TFLITE_HEAD + bytes(24))
    (root / "renamed.bin").write_bytes(TFLITE_HEAD + bytes(24))  # content wins: a TFLite file by any name
    (root / "graph.pb").write_bytes(b"\n\x0f\n\x05input")
    (root / "model.h5").write_bytes(HDF5_HEAD + bytes(8))
    (root / "weights_no_suffix").write_bytes(HDF5_HEAD + bytes(8))
    (root / "model.keras").write_bytes(b"PK")
    with zipfile.ZipFile(root / "archive.zip", "w") as z:  # a .keras archive under another name
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", HDF5_HEAD)
    (root / "slim").mkdir()
    (root / "slim" / "model.ckpt.index").write_bytes(b"")
    (root / "slim" / "model.ckpt.data-00000-of-00001").write_bytes(b"")
    (root / "ckpt_folder").mkdir()
    (root / "ckpt_folder" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    timm_state = {"conv_stem.weight": torch.zeros(8, 3, 3, 3), "bn1.weight": torch.ones(8)}
    save_file(timm_state, str(root / "timm.safetensors"))
    torch.save({"state_dict": timm_state}, root / "timm.pth")
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text(json.dumps({"model_type": "mobilenet_v1", "depth_multiplier": 0.25}))
    save_model(tiny, root / "ours")
    save_weights(tiny, root / "ours.safetensors", tiny.config)
    save_state({"model": tiny.state_dict(), "model_config": tiny.config.to_json()}, root / "state.pt")
    (root / "run").mkdir()
    save_weights(tiny, root / "run" / "last.safetensors", tiny.config)
    return {
        "model.tflite": "tflite", "renamed.bin": "tflite", "graph.pb": "tf-frozen", "model.h5": "keras",
        "weights_no_suffix": "keras", "model.keras": "keras", "archive.zip": "keras",
        "slim/model.ckpt": "tf-slim", "slim/model.ckpt.index": "tf-slim",
        "slim/model.ckpt.data-00000-of-00001": "tf-slim", "ckpt_folder": "tf-slim",
        "timm.safetensors": "timm", "timm.pth": "timm", "hf": "hf",
        "ours": "mobilenets", "ours/model.safetensors": "mobilenets", "ours.safetensors": "mobilenets",
        "state.pt": "mobilenets", "run": "mobilenets",
    }


def test_each_format_is_detected_from_its_files(tmp_path, tiny):
    expected = _files(tmp_path, tiny)
    found = {name: detect_format(tmp_path / name) for name in expected}
    assert found == expected
    assert set(found.values()) == set(FORMATS)  # every format has a case
    assert detect_format(str(tmp_path / "graph.pb")) == "tf-frozen"  # str paths too


def test_live_objects_are_detected_by_type():
    assert detect_format({"conv_stem.weight": torch.zeros(1)}) == "timm"
    assert detect_format(SimpleNamespace(config=SimpleNamespace(model_type="mobilenet_v1"))) == "hf"
    assert detect_format(SimpleNamespace(get_layer=lambda name: None, layers=[])) == "keras"
    assert detect_format(SimpleNamespace(conv_stem=None)) == "timm"


def test_what_cannot_be_told_is_one_error_naming_the_choices(tmp_path, tiny):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"\x08\x01")
    save_file({"conv_stem.convolution.weight": torch.zeros(1)}, str(tmp_path / "hf_weights.safetensors"))
    save_file({"stem.conv.weight": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x05\x00")
    cases = [
        (tmp_path / "notes.txt", r"cannot tell the format of .*notes.txt .*give source_format, one of: keras"),
        (tmp_path / "empty", r"cannot tell the format of .*empty \(a folder with no config.json"),
        (tmp_path / "saved", "is a TensorFlow SavedModel, which convert does not read"),
        (tmp_path / "saved" / "saved_model.pb", "is a TensorFlow SavedModel"),
        (tmp_path / "hf_weights.safetensors", "holds Hugging Face MobileNetV1 weights: give the model folder"),
        (tmp_path / "bare.safetensors", "this package's layer names but no model config"),
        (tmp_path / "broken.safetensors", "is not a safetensors file"),
        (object(), r"cannot tell the format of an object of type object \(not a Keras"),
    ]
    for src, message in cases:
        with pytest.raises(MobileNetsError, match=message) as info:
            detect_format(src)
        assert "\n" not in str(info.value) and "--" not in str(info.value)
    with pytest.raises(MobileNetsError) as info:
        detect_format(tmp_path / "notes.txt")
    assert all(name in str(info.value) for name in FORMATS)  # the error lists every choice
    with pytest.raises(DataNotFoundError, match="source not found"):
        detect_format(tmp_path / "missing.tflite")


def test_convert_and_the_cli_detect_when_no_format_is_given(tmp_path, tiny, capsys):
    save_model(tiny, tmp_path / "src")
    model, written = convert(tmp_path / "src", output_dir=tmp_path / "out")
    assert written == tmp_path / "out" and load_model(written).config == tiny.config
    with pytest.raises(MobileNetsError, match="keep_background applies to .* not mobilenets"):
        convert(tmp_path / "src", output_dir=tmp_path / "out2", keep_background=True)
    with pytest.raises(MobileNetsError, match="output_dir is required"):
        convert(tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), "--output", str(tmp_path / "cli")]) == 0
    assert "converted mobilenets (detected) -> mobilenets" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["convert", str(tmp_path / "notes.txt"), "--output", str(tmp_path / "cli2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenet: error: cannot tell the format of") and "\n" not in err
    assert not (tmp_path / "cli2").exists()
