"""The shared fixtures themselves: a randomized-BatchNorm model must answer its input (the export,
fold and conversion tests built on it see nothing otherwise)."""

import pytest
import torch
from torch import nn

from mobilenets.models.mobilenet import MobileNet
from mobilenets.models.registry import create_model

MODELS = {
    "separable 0.25 @32": lambda: MobileNet(alpha=0.25, resolution=32, num_classes=10),
    "tf_same relu6 @48": lambda: MobileNet(alpha=0.25, resolution=48, num_classes=10, padding="tf_same",
                                           activation="relu6"),
    "conv variant @32": lambda: create_model("mobilenet_v1_conv_1.0_224", resolution=32, num_classes=10),
}


@pytest.mark.parametrize("classifier_std", [None, 1.0])
@pytest.mark.parametrize("name", list(MODELS))
def test_randomized_batchnorm_models_answer_their_input(name, classifier_std, randomized_bn):
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the convolutions' initial weights
        model = randomized_bn(MODELS[name](), classifier_std=classifier_std)
    assert not model.training and not any(m.training for m in model.modules())
    res = model.config.resolution
    x = torch.randn(8, 3, res, res, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
    assert torch.isfinite(logits).all()
    # Purely random statistics gave a spread across inputs of 0 to 4e-8 of the logits' size;
    # measured here: 0.47 to 1.0.
    spread = float(logits.std(0).mean() / logits.abs().mean())
    assert spread > 0.2, spread
    assert len(set(logits.argmax(1).tolist())) > 1


def test_randomized_batchnorm_parameters_are_not_the_identity(randomized_bn):
    # every folding term matters: scale, shift, mean and variance all differ from the defaults,
    # and the statistics are not exactly the calibration batch's
    model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=10), seed=5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight - 1).abs().max() > 0.1 and m.bias.abs().max() > 0.05
            assert m.running_mean.abs().max() > 0.01 and (m.running_var - 1).abs().max() > 0.05
            assert m.momentum == model.config.bn_momentum  # restored after the calibration


def test_randomized_batchnorm_is_deterministic_and_leaves_the_global_random_state(randomized_bn):
    def make():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return MobileNet(alpha=0.25, resolution=32, num_classes=10, dropout=0.5)

    a, b = make(), make()
    state = torch.get_rng_state()
    randomized_bn(a, seed=2, classifier_std=1.0)
    assert torch.equal(torch.get_rng_state(), state)  # no dropout ran, nothing drew from it
    randomized_bn(b, seed=2, classifier_std=1.0)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
