"""Multi-process training under torchrun: joining the process group, and BatchNorm statistics
taken over the whole distributed batch (also on CPU, where torch's SyncBatchNorm refuses)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # True when init_distributed created the process group (so its caller destroys it); False
    # when it joined one the caller's script had set up (which the caller keeps).
    created: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun set up (if any): NCCL on GPU, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank(), created)


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are taken over the whole distributed batch.

    torch's SyncBatchNorm refuses CPU modules ("only work with GPU modules"), and CPU/gloo runs
    are how this project tests DDP; so on CPU we sum per-channel moments across processes with
    the autograd-aware ``torch.distributed.nn.functional.all_reduce``. On GPU torch's own
    SyncBatchNorm is used instead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x if x.dtype == torch.float64 else x.float()
        count = torch.full((1,), xf.numel() / c, dtype=xf.dtype, device=x.device)
        with warnings.catch_warnings():
            # torch warns (FutureWarning) that the functional collectives are being reworked; the
            # autograd-aware all_reduce is still the documented way to sum across processes
            warnings.simplefilter("ignore", FutureWarning)
            stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
            self.num_batches_tracked.add_(1)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d synchronised across processes: torch's SyncBatchNorm on GPU, ours on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, DistributedBatchNorm2d):
            new = DistributedBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats)
            new.to(device=child.running_mean.device, dtype=child.running_mean.dtype)  # keep float64 runs float64
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module
