"""Small real inputs for every training command (module-scoped, built once per test file): a
MobileNet model folder to start from or distil, a folder of real photos in class folders, the
detection and geolocation stand-ins at toy size, and the argv that trains each command on them."""

from __future__ import annotations

import pytest

# The five training commands, by the name the tests use.
COMMANDS = ("train", "detect", "geo", "distill", "finetune")


@pytest.fixture(scope="session")
def command_inputs(tmp_path_factory, photo_folder):
    """``{name: path}`` of everything the five commands need, built once."""
    import torch

    from mobilenets.cli.main import main
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.tasks.detect.standin import write_standin as detect_standin
    from mobilenets.tasks.geo.standin import write_standin as geo_standin
    from mobilenets.weights.folder import save_model

    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    # a 3-class classifier, as a converted model folder would be (classes named as the photo folders)
    weights = save_model(MobileNet(MobileNetConfig(alpha=0.5, resolution=32, num_classes=3)).eval(),
                         root / "weights", classes=["astronaut", "chelsea", "coffee"])
    weights2 = save_model(MobileNet(MobileNetConfig(alpha=0.75, resolution=32, num_classes=3)).eval(),
                          root / "weights2", classes=["astronaut", "chelsea", "coffee"])
    photos = photo_folder(root / "photos", size=48, per_class=(6, 2), corrupt=False)
    other_photos = photo_folder(root / "photos2", size=40, per_class=(5, 2), corrupt=False)
    detect = detect_standin(root / "detect", seed=1, train=4, val=2, size=64)
    other_detect = detect_standin(root / "detect2", seed=2, train=4, val=2, size=64)
    geo = root / "geo"
    geo_standin(geo, photos=60, places=4, size=32, seed=1)
    assert main(["geo", "cells", "--photos", str(geo / "train.csv"), "--max-per-cell", "40", "--min-per-cell", "2",
                 "--output", str(geo / "cells.csv"), "--json"]) == 0
    assert main(["geo", "cells", "--photos", str(geo / "train.csv"), "--max-per-cell", "20", "--min-per-cell", "2",
                 "--output", str(geo / "cells2.csv"), "--json"]) == 0
    return {"weights": weights, "weights2": weights2, "photos": photos, "photos2": other_photos, "detect": detect,
            "detect2": other_detect, "geo": geo, "root": root}


@pytest.fixture(scope="session")
def command_argv():
    """:func:`base_argv`, as a fixture (test folders are not importable packages)."""
    return base_argv


def base_argv(name: str, inputs: dict, output: str) -> list[str]:
    """A command line that trains ``name`` for two steps on the toy inputs, into ``output``."""
    tiny = ["--output", output, "--max-steps", "2", "--epochs", "3", "--no-progress"]
    if name == "train":
        return ["train", "--alpha", "0.25", "--resolution", "32", "--batch-size", "16", *tiny]
    if name == "detect":
        return ["detect", "train", "--data", str(inputs["detect"]), "--alpha", "0.25", "--resolution", "64",
                "--batch-size", "2", *tiny]
    if name == "geo":
        g = inputs["geo"]
        return ["geo", "train", "--data", str(g / "train.csv"), "--val", str(g / "val.csv"), "--cells",
                str(g / "cells.csv"), "--alpha", "0.25", "--resolution", "32", "--batch-size", "8", *tiny]
    if name == "distill":
        return ["distill", "--teacher", str(inputs["weights"]), "--data", str(inputs["photos"] / "train"),
                "--alpha", "0.25", "--resolution", "32", "--batch-size", "4", *tiny]
    if name == "finetune":
        return ["finetune", "--data", str(inputs["photos"]), "--init", str(inputs["weights"]), "--batch-size", "4",
                *tiny]
    raise ValueError(name)
