"""Helper for tests/test_train.py: one DDP+SyncBN backward pass in each of `world` processes.

Run as a script by the test (spawned processes must import it by module path)."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mobilenets import create_model
from mobilenets.train.distributed import convert_sync_batchnorm


def batch():
    g = torch.Generator().manual_seed(1)  # a batch on which float32 and float64 grads agree to 1e-4
    return torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)


def model():
    torch.manual_seed(0)
    return create_model("mobilenet_v1_0.25_128", resolution=32, num_classes=10, dropout=0.0).train()


def grads(net, x, y):
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return {n.removeprefix("module."): p.grad.clone() for n, p in net.named_parameters()}


def worker(rank, world, port, sync, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    net = model()
    if sync:
        net = convert_sync_batchnorm(net, torch.device("cpu"))
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    x, y = batch()
    g = grads(ddp, x[rank::world], y[rank::world])
    if rank == 0:
        torch.save(g, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    port, sync, out = int(sys.argv[1]), sys.argv[2] == "sync", sys.argv[3]
    mp.start_processes(worker, args=(2, port, sync, out), nprocs=2, start_method="spawn")
