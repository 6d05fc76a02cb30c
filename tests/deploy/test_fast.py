"""The PyTorch fast-inference paths (``mobilenets.deploy.fast``) that the torch-fast engines run,
and the trained-like BatchNorm statistics every untrained benchmark model gets."""

import pytest
import torch

from mobilenets.bench.run import fast_vs_eager
from mobilenets.deploy.fast import fast_inference, realistic_batchnorm, torchscript_inference
from mobilenets.deploy.fold import inference_network
from mobilenets.models.registry import create_model

SMALL = "mobilenet_v1_0.25_128"


def test_torch_fast_matches_eager(randomized_bn):
    # BatchNorm affine parameters far from identity (so the folding is really exercised), running
    # statistics from images (so activations keep their scale through the network)
    model = realistic_batchnorm(randomized_bn(create_model(SMALL), seed=1))
    x = torch.randn(3, 3, 128, 128)
    fast, how = fast_inference(model, x)
    assert how.startswith(("torch.compile", "TorchScript"))
    with torch.inference_mode():
        ref = model(x)
        got = fast(x)
    scale = float(ref.abs().max())
    assert scale > 0.1  # realistic logits, not vanishing activations
    assert float((got - ref).abs().max()) <= 1e-4 * max(1.0, scale)
    assert fast_vs_eager(model, lambda: fast(x), x.numpy()) <= 1e-4 * max(1.0, scale)
    with pytest.raises(RuntimeError, match="torch-fast differs from eager"):
        fast_vs_eager(model, lambda: fast(x) + 1e-3 * max(1.0, scale), x.numpy())
    if how.startswith("torch.compile"):
        # A dynamo reset (ExecuTorch's lowering does one) must not turn the next compile into an
        # unfrozen one: the frozen graph runs prepacked oneDNN convs, never aten::convolution.
        torch._dynamo.reset()
        with torch.inference_mode():
            fast(x)  # compiles again
            with torch.profiler.profile() as prof:
                got = fast(x)
        torch._dynamo.reset()  # leave no compiled code to later tests
        assert float((got - ref).abs().max()) <= 1e-4 * max(1.0, scale)
        assert "aten::convolution" not in {e.key for e in prof.key_averages()}
    # the TorchScript fallback (used where Inductor cannot compile) is exact too
    ts = torchscript_inference(inference_network(model).to(memory_format=torch.channels_last), x)
    with torch.inference_mode():
        assert float((ts(x) - ref).abs().max()) <= 1e-4 * max(1.0, scale)


def test_realistic_batchnorm_keeps_activations_in_scale():
    raw = create_model(SMALL).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        raw_f = raw.forward_features(x).abs().mean()
        cal = realistic_batchnorm(raw)
        cal_f = cal.forward_features(x).abs().mean()
    assert raw_f < 1e-6  # untrained statistics let activations vanish
    assert cal_f > 0.05
    assert cal is not raw and not cal.training
    bn = next(m for m in cal.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.momentum == raw.config.bn_momentum  # put back after the cumulative average
    raw_bn = next(m for m in raw.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert float(raw_bn.running_var.min()) == 1.0  # the caller's model is not changed
