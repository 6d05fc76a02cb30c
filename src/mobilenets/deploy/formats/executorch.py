"""ExecuTorch export: ``torch.export`` lowered to the XNNPACK delegate.

Int8 goes through the PT2E flow with the ``XNNPACKQuantizer`` as
:func:`mobilenets.deploy.quantizer.int8_quantizer` sets it up (symmetric per-channel int8 weights,
asymmetric int8 activations with ReLU6-aware ranges, static, the classifier in float): calibrated here on ``calibration``
(post-training), or given already converted by quantization-aware fine-tuning (``quantized``). ExecuTorch plans memory for a bounded batch (the
planner gave 15 in our runs, below the declared bound); the runner
(:mod:`mobilenets.deploy.runtime`) reads the planned bound from the program and splits larger
batches.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import InferenceNet
from mobilenets.errors import MobileNetsError

MAX_BATCH = 32  # bound declared for ExecuTorch's dynamic batch (the planner may pick less)


def write(net: InferenceNet, path: str, resolution: int, calibration: np.ndarray | None = None,
          quantized: torch.fx.GraphModule | None = None) -> None:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise MobileNetsError(f"executorch export needs the executorch package ({exc}); "
                              f"pip install executorch") from None
    x = torch.randn(2, 3, resolution, resolution)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    with warnings.catch_warnings():  # torch.export's and the quantizer's deprecation notices
        warnings.simplefilter("ignore")
        module: nn.Module = net
        if quantized is not None:  # int8 already: the converted graph of quantization-aware fine-tuning
            module = quantized
        elif calibration is not None:
            from torchao.quantization.pt2e.quantize_pt2e import (
                convert_pt2e,
                prepare_pt2e,
            )

            from mobilenets.deploy.quantizer import int8_quantizer

            graph = torch.export.export(net, (x,), dynamic_shapes=dynamic).module()
            prepared = prepare_pt2e(graph, int8_quantizer())
            with torch.no_grad():
                for i in range(0, len(calibration), 32):
                    prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + 32], dtype=np.float32)))
            module = convert_pt2e(prepared)
        program = torch.export.export(module, (x,), dynamic_shapes=dynamic)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(path, "wb") as fh:
        fh.write(lowered.buffer)
