"""Fixtures of the deploy tests: a trained digits run (shared by every file here) and its
validation images with the eager model's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

DIGITS_EPOCHS = 8  # about 96 % top-1 on the 450 test digits (the default 30 epochs give ~97.5 %)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A digits model trained by `mobilenet train`'s function (best checkpoint of the run)."""
    from mobilenets.train.classify import train
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads

    out = tmp_path_factory.mktemp("export") / "digits-run"
    # The same model whatever ran before in this worker: the int8 figures below were measured on
    # the 2-thread model (PTQ agreement 99.78 %); a 1-thread model differs and its PTQ agreement
    # is 98.67 % (it would need qat_epochs).
    with torch_threads(2):
        train(None, options=TrainOptions(output=str(out), progress=False), recipe_overrides={"epochs": DIGITS_EPOCHS})
    return out


@pytest.fixture(scope="session")
def digits_val(digits_run):
    """The 450 validation digits (float32 NCHW), their labels and the trained eager model's logits."""
    from mobilenets.data.datasets import load_data
    from mobilenets.weights.checkpoint import load_checkpoint

    model, _ = load_checkpoint(digits_run)
    val = load_data(None, model.config.resolution).val
    x = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        logits = model(x).numpy()
    return x.numpy(), np.array(val.targets), logits
