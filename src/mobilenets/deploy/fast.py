"""Fast PyTorch-native inference of a MobileNet, without leaving PyTorch.

:func:`fast_inference` is the fastest fp32 form measured on CPU: BatchNorm folded into the
convolutions (:func:`mobilenets.deploy.fold.inference_network`), channels_last weights, then
``torch.compile`` (Inductor) with weight freezing and the C++ wrapper; where Inductor cannot run
(no C++ compiler), TorchScript trace + freeze + ``optimize_for_inference``, the next fastest.
:func:`fast_bf16_inference_model` is the same in bfloat16. :func:`realistic_batchnorm` gives an
untrained model trained-like BatchNorm statistics, so that timing it is meaningful.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mobilenets.models.mobilenet import MobileNet

Forward = Callable[[torch.Tensor], torch.Tensor]


def realistic_batchnorm(model: MobileNet, seed: int = 0, images: int = 16) -> MobileNet:
    """A copy of an untrained ``model`` whose BatchNorm running statistics come from random
    images (as after training), so activations keep a realistic scale through the network: with
    the initial statistics (mean 0, variance 1) they shrink towards denormal numbers, which some
    kernels run much slower than normal ones, and a benchmark of such a model would mislead."""
    m = copy.deepcopy(model).float()
    res = m.config.resolution
    gen = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the batches below
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(images // 2, 3, res, res, generator=gen))
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = model.config.bn_momentum
    return m.eval()


def inductor_inference_config() -> Any:
    """Inductor's settings for CPU inference (a context manager): weight freezing (constant
    folding, prepacked oneDNN weights) and the C++ wrapper (no Python between kernels)."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True, cpp_wrapper=True)


def compiled_inference(net: nn.Module, example: torch.Tensor, cast: torch.dtype | None = None) -> Forward:
    """``net`` through ``torch.compile`` (Inductor) for the shape of ``example``, with
    :func:`inductor_inference_config`, as PyTorch's CPU inference guidance recommends; compiled
    here, by one call. With ``cast``, inputs are cast to that dtype and logits back to float32."""
    compiled = torch.compile(net, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        # The settings go with every call, not only the first: whatever calls
        # ``torch._dynamo.reset()`` (ExecuTorch's XNNPACK lowering does) makes the next call compile
        # again, and without them that compile is unfrozen and ~1.5x slower. Costs ~20 us a call.
        with inductor_inference_config():
            if cast is not None:
                return compiled(x.to(cast, memory_format=torch.channels_last)).float()
            return compiled(x.contiguous(memory_format=torch.channels_last))

    with torch.inference_mode():
        run(example)
    return run


def torchscript_inference(net: nn.Module, example: torch.Tensor) -> Forward:
    """``net`` traced on ``example`` (channels_last), frozen and ``optimize_for_inference``-d:
    the fallback where Inductor cannot compile."""
    example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
        traced = torch.jit.trace(net, example, check_trace=False)
        module = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    return lambda x: module(x.contiguous(memory_format=torch.channels_last))


def fast_inference(model: MobileNet, example: torch.Tensor) -> tuple[Forward, str]:
    """Our fastest PyTorch-native fp32 inference form of ``model``, and how it was made.

    BatchNorm folded into the convolutions, channels_last weights, then :func:`compiled_inference`
    for the shape of ``example`` (another shape recompiles, without those settings: make one per
    batch size). Where Inductor cannot run (no C++ compiler), :func:`torchscript_inference`.
    Call the result on float32 NCHW batches inside ``torch.inference_mode``; it returns float32
    logits."""
    from mobilenets.deploy.fold import inference_network

    net = inference_network(model).eval().to(memory_format=torch.channels_last)
    try:
        return compiled_inference(net, example), "torch.compile (Inductor, freezing, C++ wrapper)"
    except Exception as exc:  # Inductor's failures (no compiler, ...) come in many types
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return torchscript_inference(net, example), f"TorchScript optimize_for_inference (torch.compile failed: {reason})"


def fast_bf16_inference_model(model: MobileNet, example: torch.Tensor) -> Forward:
    """The bfloat16 form of :func:`fast_inference`, for CPUs with native bf16 matmul
    (AVX512-BF16, AMX): BatchNorm folded, channels_last, bf16 weights and activations,
    ``torch.compile`` with freezing and the C++ wrapper. Takes float32 NCHW, returns float32
    logits; bf16 keeps 8 bits of mantissa, so logits differ from eager by ~1e-2 relative."""
    from mobilenets.deploy.fold import inference_network

    net = inference_network(model).eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    return compiled_inference(net, example, cast=torch.bfloat16)
