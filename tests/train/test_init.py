"""``train --init WEIGHTS`` (any checkpoint, run folder or converted model folder; a new
classifier when the classes differ; the architecture from the weights), ``--padding`` /
``--activation``, and the warning when a run's options rule out the conversion it is meant for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet
from mobilenets.train.classify import conversion_problem, train
from mobilenets.train.options import TrainOptions
from mobilenets.weights.checkpoint import load_checkpoint, save_model

TINY = ["--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "64", "--max-steps", "1",
        "--no-progress"]
# Preprocessing unlike the package default (mean = std = 0.5): timm's ImageNet statistics.
IMAGENET = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.9, interpolation="bicubic",
                         input_size=(3, 64, 64))


@pytest.fixture
def converted(tmp_path, randomized_bn) -> Path:
    """A model folder like `mobilenet convert` writes for TF weights: 1000 classes, TF SAME
    padding, ReLU6, 64 px, ImageNet-style preprocessing."""
    model = MobileNet(alpha=0.25, resolution=64, num_classes=1000, padding="tf_same", activation="relu6")
    return save_model(randomized_bn(model), tmp_path / "converted", preprocessing=IMAGENET,
                      source={"framework": "tf-slim", "path": "somewhere"})


def test_init_from_a_converted_model_gets_a_new_classifier_and_keeps_its_architecture(converted, tmp_path):
    said: list[str] = []
    out = tmp_path / "run"
    # lr ~0: the saved weights are the init weights, so what the run started from is visible
    train(None, init=converted, resolution=32, recipe_overrides={"epochs": 1, "lr": 1e-12},
          options=TrainOptions(output=str(out), progress=False, max_steps=1), log=said.append)
    assert f"init from {converted}: new classifier: 1000 -> 10 classes" in said
    config = json.loads((out / "config.json").read_text())
    assert config["init"] == {"path": str(converted), "classifier": "new classifier: 1000 -> 10 classes"}
    assert {k: config["model"][k] for k in ("alpha", "resolution", "padding", "activation", "num_classes")} == \
        {"alpha": 0.25, "resolution": 32, "padding": "tf_same", "activation": "relu6", "num_classes": 10}
    assert config["preprocessing"]["mean"] == list(IMAGENET.mean)  # the init's normalisation, not 0.5
    model, _ = load_checkpoint(out)  # its step checkpoint (max_steps=1 ends inside the epoch)
    start, _ = load_checkpoint(converted)
    ours, theirs = model.state_dict(), start.state_dict()
    convs = [k for k in theirs if k.endswith("conv.weight")]
    assert len(convs) == 27 and all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in convs)
    assert ours["classifier.weight"].shape == (10, 256)


def test_init_keeps_the_classifier_of_the_same_classes_and_refuses_contradicting_flags(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", *TINY, "--padding", "tf_same", "--activation", "relu6", "--convert-to", "keras",
                 "--output", str(first)]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err  # tf_same + relu6 at 32 px maps to Keras
    config = json.loads((first / "config.json").read_text())
    assert (config["model"]["padding"], config["model"]["activation"]) == ("tf_same", "relu6")
    second = tmp_path / "second"
    assert main(["train", "--init", str(first), "--epochs", "1", "--max-steps", "1", "--no-progress",
                 "--convert-to", "timm", "--output", str(second)]) == 0
    out, err = capsys.readouterr()
    assert f"init from {first}: classifier kept (10 classes)" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: this run cannot be converted to timm: padding")
    assert json.loads((second / "config.json").read_text())["init"]["path"] == str(first)
    # The architecture is the init weights'; a flag that says otherwise is one clear error.
    assert main(["train", "--init", str(first), "--activation", "relu", "--padding", "symmetric",
                 "--output", str(tmp_path / "third")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mobilenet: error: the init weights"), err
    assert "activation='relu' (they have 'relu6')" in err[0] and "padding='symmetric' (they have 'tf_same')" in err[0]
    with pytest.raises(MobileNetsError, match=r"alpha=0.5 \(they have 0.25\)"):
        train(None, "mobilenet_v1_0.5_128", init=first, options=TrainOptions(output=str(tmp_path / "fourth")))
    assert not (tmp_path / "third").exists() and not (tmp_path / "fourth").exists()


def test_conversion_problem_names_what_the_converter_refuses():
    from mobilenets.models.config import MobileNetConfig

    keras_ready = MobileNetConfig(alpha=0.25, resolution=32, padding="tf_same", activation="relu6")
    assert conversion_problem(keras_ready, "keras") is None
    assert "padding 'symmetric' does not map" in conversion_problem(keras_ready.replace(padding="symmetric"), "keras")
    assert "activation 'relu'" in conversion_problem(keras_ready.replace(activation="relu"), "keras")
    assert "padding 'tf_same' does not map" in conversion_problem(keras_ready, "timm")
    assert conversion_problem(keras_ready.replace(alpha=1.0, padding="symmetric"), "timm") is None
