"""Label-free quantization-aware fine-tuning: the float network teaches its own int8 copy.

Post-training int8 loses a real ImageNet MobileNetV1 (BatchNorm folded into the weights leaves a
few channels with very large gains): per-channel int8 weights alone keep only ~64 % top-1
agreement with the float model. The remedy has to move the weights, so the folded network is
fine-tuned with the quantization simulated in the forward pass, on PyTorch's own stack:

- ``torch.export`` of the folded :class:`~mobilenets.deploy.fold.InferenceNet`, then PT2E's
  ``prepare_qat_pt2e`` with ExecuTorch's ``XNNPACKQuantizer`` (int8 symmetric per-channel
  weights, int8 per-tensor activations with moving-average ranges, ReLU6-aware; the classifier left
  in float; see :mod:`mobilenets.deploy.quantizer`), so the fake quantization is the deployed one;
- **self-distillation**: the loss is the KL divergence from the float network's own softmax
  (temperature ``temperature``) on the same augmented batch, so any folder of photos will do,
  flat or nested, without labels; where labels exist they are not needed either;
- the result is both the fine-tuned float weights (ONNX Runtime and TFLite quantize those with
  their own calibrators) and the converted PT2E int8 graph (ExecuTorch lowers it as it is, with the
  ranges learned in training).

It has its own short loop rather than :func:`mobilenets.train.loop.fit`: it trains a PT2E
``GraphModule`` (fake-quantized, converted after training), which the loop's ``prepare_model``,
DDP, EMA and checkpoint resume do not fit; it runs for a few epochs inside ``mobilenet export``,
where a run folder of its own would be one more thing left behind.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from mobilenets.deploy.fold import InferenceNet
from mobilenets.errors import MobileNetsError

# Adam. Measured on the real ImageNet model (benchmarks/int8_real.py's data, 40 steps of 32):
# 1e-5 reaches 76 % top-1 agreement, 1e-4 drifts away from the float model (40 %).
QAT_LR = 1e-5
QAT_BATCH = 32
QAT_TEMPERATURE = 1.0
CROP_SCALE = (0.25, 1.0)  # augmentation of the fine-tuning images: random crop of this area, resized back
EXPORT_MAX_BATCH = 1024


def exported(net: torch.nn.Module, resolution: int) -> torch.fx.GraphModule:
    """``torch.export`` of ``net`` with a dynamic batch, as the graph module PT2E quantizes."""
    example = torch.randn(2, 3, resolution, resolution)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=EXPORT_MAX_BATCH)}}
    return torch.export.export(net, (example,), dynamic_shapes=dynamic).module()


def _augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of CROP_SCALE of the area (aspect 3/4..4/3) resized back, half
    mirrored, then mixed with the next image of the batch (mixup, weight uniform in [0, 1]). The
    teacher labels whatever the student sees, so mixed images are as good a target as real ones
    and make a few photos into many ("function matching", Beyer et al., 2022)."""
    n, _, h, w = batch.shape
    out = torch.empty_like(batch)
    for i in range(n):
        area = float(torch.empty(()).uniform_(*CROP_SCALE, generator=gen)) * h * w
        aspect = float(torch.empty(()).uniform_(np.log(3 / 4), np.log(4 / 3), generator=gen).exp())
        ch, cw = min(h, int(round((area / aspect) ** 0.5))), min(w, int(round((area * aspect) ** 0.5)))
        top = int(torch.randint(0, h - ch + 1, (), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (), generator=gen))
        img = TF.resized_crop(batch[i], top, left, ch, cw, [h, w], antialias=True)
        out[i] = TF.horizontal_flip(img) if float(torch.rand((), generator=gen)) < 0.5 else img
    lam = torch.rand(n, 1, 1, 1, generator=gen)
    return lam * out + (1 - lam) * out.roll(1, 0)


@dataclass
class QATResult:
    """What :func:`qat_finetune` gives back."""

    net: InferenceNet              # the fine-tuned float network (ONNX / TFLite quantize it themselves)
    quantized: torch.fx.GraphModule  # the converted PT2E int8 graph (ExecuTorch lowers it)
    report: dict[str, Any]


def _load_weights(net: InferenceNet, graph: torch.fx.GraphModule) -> InferenceNet:
    """A copy of ``net`` with the trained weights of the prepared graph (same parameter names)."""
    tuned = copy.deepcopy(net)
    own = tuned.state_dict()
    state = {k: v.detach().clone() for k, v in graph.state_dict().items() if k in own}
    if set(state) != set(own):
        raise MobileNetsError(f"the quantization-aware graph lost parameters: {sorted(set(own) - set(state))[:3]}")
    tuned.load_state_dict(state)
    return tuned.eval()


def qat_finetune(net: InferenceNet, images: np.ndarray, epochs: int, *, resolution: int,
                 calibration: np.ndarray | None = None, lr: float = QAT_LR, batch_size: int = QAT_BATCH,
                 temperature: float = QAT_TEMPERATURE, seed: int = 0, float_head: bool = True,
                 log: Callable[[str], None] | None = None, progress: bool = False) -> QATResult:
    """Fine-tune ``net`` (folded, float) for ``epochs`` passes over ``images`` (float32 NCHW,
    preprocessed, no labels) with int8 simulated by PT2E, distilling from ``net`` itself.

    The activation ranges are first observed on ``calibration`` (default: ``images``), then learned
    (moving average) while the weights move; Adam at ``lr``, batches of ``batch_size`` randomly
    cropped and mirrored images (the teacher sees the same crops). ``net`` is not changed."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from mobilenets.deploy.quantizer import int8_quantizer

    if epochs < 1 or len(images) < 1:
        raise MobileNetsError(f"quantization-aware fine-tuning needs epochs >= 1 and images, got {epochs} "
                              f"and {len(images)}")
    say = log or (lambda _msg: None)
    started = time.time()
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    prepared = prepare_qat_pt2e(exported(copy.deepcopy(net), resolution), int8_quantizer(qat=True, float_head=float_head))
    observe = images if calibration is None else calibration
    with torch.no_grad():  # the ranges before any weight moves
        for i in range(0, len(observe), 64):
            prepared(torch.from_numpy(np.ascontiguousarray(observe[i:i + 64])))
    move_exported_model_to_train(prepared)
    opt = torch.optim.Adam([p for p in prepared.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(np.ascontiguousarray(images))
    steps = epochs * max(1, -(-len(x_all) // batch_size))
    losses = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="quantization-aware fine-tuning", unit="step", leave=False)
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            x = _augment(x_all[order[i:i + batch_size]], gen)
            with torch.no_grad():
                target = F.log_softmax(teacher(x) / temperature, 1)
            student = F.log_softmax(prepared(x) / temperature, 1)
            loss = F.kl_div(student, target, log_target=True, reduction="batchmean") * temperature ** 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(kl=f"{np.mean(losses[-10:]):.3f}")
    if bar is not None:
        bar.close()
    move_exported_model_to_eval(prepared)
    tuned = _load_weights(net, prepared)
    quantized = convert_pt2e(prepared)
    k = max(1, len(losses) // 10)
    report = {"method": "self-distillation (KL to the float model's softmax), PT2E prepare_qat_pt2e, "
                        "XNNPACKQuantizer", "epochs": epochs, "steps": len(losses), "images": len(images),
              "batch_size": batch_size, "lr": lr, "temperature": temperature, "float_head": float_head,
              "kl_first": round(float(np.mean(losses[:k])), 4), "kl_last": round(float(np.mean(losses[-k:])), 4),
              "seconds": round(time.time() - started, 1)}
    say(f"quantization-aware fine-tuning: {len(losses)} steps on {len(images)} images, KL "
        f"{report['kl_first']} -> {report['kl_last']} ({report['seconds']:.0f} s)")
    return QATResult(tuned, quantized, report)
