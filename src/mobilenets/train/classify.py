"""Training and evaluation: a handful of plain functions behind ``mobilenet train`` and ``eval``.

Resume is exact: the data order and every sample's augmentation are functions of
(seed, epoch, sample index) alone (see :class:`ResumableSampler`), and a checkpoint holds the
model, optimizer, scheduler, EMA, RNG states and the step reached inside the epoch. So a run
killed anywhere and resumed from its last checkpoint follows the same path as one never stopped.

Distributed: launched by ``torchrun``, each process trains on its shard of every global batch
under DistributedDataParallel (gloo on CPU, NCCL on GPU); rank 0 alone logs and saves.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mobilenets.data.datasets import Augment, collate_skip_bad, load_data
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.models.registry import get_config
from mobilenets.train.recipes import Recipe, build_ema, build_optimizer, build_scheduler, get_recipe
from mobilenets.weights.checkpoint import load_state, save_state, save_weights

# The built-in digits data (1,347 training images) needs far fewer epochs and a smaller batch than
# the ImageNet-sized presets; measured: the paper preset reaches 98-99 % test top-1 by epoch 25.
DIGITS_RECIPE = {"epochs": 30, "batch_size": 64}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainOptions:
    """How to run (not what to learn: that is the :class:`Recipe`)."""

    output: str | None = None  # run folder; default: a new folder under runs/
    resume: bool = False  # continue from the newest checkpoint in `output`
    workers: int = 0  # DataLoader worker processes
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = False  # bf16 autocast (CPU and GPU)
    float64: bool = False  # model and data in float64: slow, for numerical checks (DDP equivalence)
    channels_last: bool = False
    compile: bool = False  # torch.compile the training model
    sync_bn: bool = False  # SyncBatchNorm under DDP
    keep_last: int = 3  # step checkpoints kept
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0: epoch ends only)
    deterministic: bool = False  # torch.use_deterministic_algorithms (bit-exact resume on CPU)
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit); for tests
    progress: bool = True
    eval_batch_size: int = 256


# --- data order --------------------------------------------------------------------------------

class ResumableSampler(Sampler):
    """Global-batch order that is a pure function of (seed, epoch), sharded across ranks, and
    that can start at any step. Each item is ``(index, sample_seed)`` so augmentations are
    seeded per sample. torch's DistributedSampler cannot start mid-epoch nor seed augmentations
    independently of worker count, hence this small class."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world, self.shuffle = n, batch_size, seed, rank, world, shuffle
        self.epoch, self.start_step = 0, 0

    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size  # drop_last: BN on a 3-image batch helps no one

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        used = self.steps_per_epoch() * self.batch_size
        order = order[self.start_step * self.batch_size: used]
        for i in order[self.rank:: self.world].tolist():
            yield i, (self.seed * 1_000_003 + self.epoch) * 10_000_019 + i

    def __len__(self) -> int:
        return (self.steps_per_epoch() - self.start_step) * self.batch_size // self.world


class SeededDataset(Dataset):
    """Runs the wrapped dataset's random transforms under a per-sample seed, restoring the
    caller's RNG states afterwards, so augmentation does not depend on workers or on resume."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, sample_seed = item
        py_state, torch_state = random.getstate(), torch.get_rng_state()
        random.seed(sample_seed)
        torch.manual_seed(sample_seed % (2**63))
        try:
            return self.base[index]
        finally:
            random.setstate(py_state)
            torch.set_rng_state(torch_state)


# --- distributed -------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun set up (if any): NCCL on GPU, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are taken over the whole distributed batch.

    torch's SyncBatchNorm refuses CPU modules ("only work with GPU modules"), and CPU/gloo runs
    are how this project tests DDP; so on CPU we sum per-channel moments across processes with
    the autograd-aware ``torch.distributed.nn.functional.all_reduce``. On GPU torch's own
    SyncBatchNorm is used instead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x if x.dtype == torch.float64 else x.float()
        count = torch.full((1,), xf.numel() / c, dtype=xf.dtype, device=x.device)
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


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


# --- the steps ---------------------------------------------------------------------------------

def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top.eq(labels[:, None])
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def _full(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16 autocast logits are upcast; float64 ones are kept)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
             channels_last: bool = False) -> dict[str, float]:
    """Top-1 / top-5 (fractions) and mean cross-entropy over ``loader``."""
    model.eval()
    n = top1 = top5 = 0
    loss = 0.0
    for images, labels, _bad in loader:
        if not len(labels):
            continue
        images, labels = images.to(device, next(model.parameters()).dtype), labels.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        loss += float(F.cross_entropy(_full(logits), labels, reduction="sum"))
        c1, c5 = accuracy_counts(logits, labels)
        top1, top5, n = top1 + c1, top5 + c5, n + len(labels)
    return {"top1": top1 / max(n, 1), "top5": top5 / max(n, 1), "loss": loss / max(n, 1), "images": n}


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    npv = json.loads(state["numpy"])
    np.random.set_state((npv[0], np.array(npv[1], dtype=np.uint32), *npv[2:]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- the run -----------------------------------------------------------------------------------

def resolve_model_config(model: str | None = None, alpha: float | None = None, resolution: int | None = None,
                         variant: str | None = None, **overrides: Any) -> MobileNetConfig:
    """A registry model (with overrides), or α/resolution/variant; default for training: 0.5-32."""
    if model:
        base = get_config(model)
    else:
        base = MobileNetConfig(alpha=0.5, resolution=32)
    changes = {k: v for k, v in dict(alpha=alpha, resolution=resolution, variant=variant, **overrides).items()
               if v is not None}
    return base.replace(**changes) if changes else base


def _new_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / stamp
    i = 1
    while path.exists():
        path, i = Path("runs") / f"{stamp}-{i}", i + 1
    return path


@dataclass
class RunState:
    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps done inside it
    global_step: int = 0
    best_top1: float = -1.0
    bad_files: list[list[str]] = field(default_factory=list)


def train(
    data: str | None = None,
    model: str | None = None,
    *,
    alpha: float | None = None,
    resolution: int | None = None,
    variant: str | None = None,
    recipe: str | Recipe = "paper",
    recipe_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    options: TrainOptions | None = None,
) -> dict[str, Any]:
    """Train a MobileNet; returns a summary (final metrics, run folder, cost). See the module doc."""
    opts = options or TrainOptions()
    rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    if data is None and not opts.resume:
        rec = rec.replace(**{k: v for k, v in DIGITS_RECIPE.items() if k not in (recipe_overrides or {})})
    if recipe_overrides:
        rec = rec.replace(**recipe_overrides)
    device = pick_device(opts.device, int(os.environ.get("LOCAL_RANK", "0")))
    ddp = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if opts.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    np.random.seed(opts.seed)

    out = Path(opts.output) if opts.output else _new_run_dir()
    state_path = _latest_state(out) if opts.resume else None
    if opts.resume and state_path is None:
        raise FileNotFoundError(f"nothing to resume in {out}: no checkpoints/step-*.pt")
    if not opts.resume and (out / "config.json").exists():
        raise ValueError(f"{out} already holds a run; use --resume to continue it or another --output")
    if ddp.world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    if state_path is not None:
        saved_run = json.loads((out / "config.json").read_text())
        cfg = MobileNetConfig.from_dict(saved_run["model"])
        rec = Recipe.from_dict(saved_run["recipe"])
        data = saved_run["data"]
    else:
        cfg = resolve_model_config(model, alpha, resolution, variant, **(model_overrides or {}))

    augment = Augment(crop_min_area=rec.crop_min_area, hflip=rec.hflip, color_jitter=rec.color_jitter,
                      randaugment=rec.randaugment)
    bundle = load_data(data, cfg.resolution, augment, seed=opts.seed)
    cfg = cfg.replace(num_classes=len(bundle.classes))

    net = MobileNet(cfg).to(device)
    if opts.float64:
        net = net.double()
    if opts.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if ddp.world > 1 and opts.sync_bn:
        net = convert_sync_batchnorm(net, device)
    optimizer = build_optimizer(net, rec)
    sampler = ResumableSampler(len(bundle.train), rec.batch_size, opts.seed, ddp.rank, ddp.world)
    steps_per_epoch = sampler.steps_per_epoch()
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {rec.batch_size} is larger than the training set ({len(bundle.train)} images)")
    scheduler = build_scheduler(optimizer, rec, steps_per_epoch)
    ema = build_ema(net, rec)
    st = RunState()

    run_meta = {"model": cfg.to_dict(), "recipe": dataclasses.asdict(rec), "data": data,
                "classes": bundle.classes, "options": dataclasses.asdict(opts), "world_size": ddp.world,
                "mean": list(augment.mean), "std": list(augment.std), "eval_crop": augment.eval_crop}
    if state_path is not None:
        saved = load_state(state_path)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if ema is not None and saved.get("ema") is not None:
            ema.module.load_state_dict(saved["ema"])
        st = RunState(**json.loads(saved["run_state"]))
        _set_rng_state(saved["rng"])
    elif ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(run_meta, indent=2))

    train_net: nn.Module = net
    if ddp.world > 1:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if opts.compile:
        train_net = torch.compile(train_net)

    train_loader = DataLoader(SeededDataset(bundle.train), batch_size=rec.batch_size // ddp.world, sampler=sampler,
                              num_workers=opts.workers, collate_fn=collate_skip_bad,
                              pin_memory=device.type == "cuda", persistent_workers=False,
                              # own generator: creating an iterator must not draw from the global
                              # RNG, or a resumed run's dropout masks would drift from the original
                              generator=torch.Generator().manual_seed(opts.seed))
    val_loader = DataLoader(bundle.val, batch_size=opts.eval_batch_size, shuffle=False, num_workers=opts.workers,
                            collate_fn=collate_skip_bad, generator=torch.Generator().manual_seed(opts.seed))
    writer = _tensorboard(out) if ddp.main else None
    last_eval: dict[str, float] = {}
    started = time.time()
    try:
        while st.epoch < rec.epochs:
            sampler.set_epoch(st.epoch, st.step_in_epoch)
            epoch_loss, epoch_images = _train_one_epoch(
                train_net, net, train_loader, optimizer, scheduler, ema, rec, st, opts, ddp, device,
                steps_per_epoch, out, run_meta, writer)
            if opts.max_steps and st.global_step >= opts.max_steps and st.step_in_epoch < steps_per_epoch:
                if ddp.main:  # never lose finished work
                    _checkpoint(net, optimizer, scheduler, ema, st, cfg, run_meta, out, opts.keep_last)
                break
            eval_model = ema.module if ema is not None else net
            last_eval = evaluate(eval_model, val_loader, device, opts.amp, opts.channels_last)
            record = {"epoch": st.epoch + 1, "step": st.global_step, "train_loss": epoch_loss / max(epoch_images, 1),
                      "val_top1": last_eval["top1"], "val_top5": last_eval["top5"], "val_loss": last_eval["loss"],
                      "lr": optimizer.param_groups[0]["lr"], "bad_files": len(st.bad_files),
                      "time_s": round(time.time() - started, 2)}
            st.epoch, st.step_in_epoch = st.epoch + 1, 0
            if ddp.main:
                with open(out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if writer is not None:
                    for k in ("train_loss", "val_top1", "val_top5", "val_loss", "lr"):
                        writer.add_scalar(k, record[k], st.epoch)
                    writer.flush()
                if last_eval["top1"] > st.best_top1:
                    st.best_top1 = last_eval["top1"]
                    save_weights(eval_model, out / "best.safetensors", cfg, {"run": json.dumps(run_meta)})
                save_weights(eval_model, out / "last.safetensors", cfg, {"run": json.dumps(run_meta)})
                _checkpoint(net, optimizer, scheduler, ema, st, cfg, run_meta, out, opts.keep_last)
            if opts.max_steps and st.global_step >= opts.max_steps:
                break
    finally:
        if writer is not None:
            writer.close()
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if ddp.main and st.bad_files:
        (out / "bad_files.txt").write_text("".join(f"{p}\t{r}\n" for p, r in st.bad_files))
    return {"output": str(out), "epochs": st.epoch, "steps": st.global_step, "val_top1": last_eval.get("top1"),
            "val_top5": last_eval.get("top5"), "best_top1": st.best_top1, "bad_files": st.bad_files,
            "model": cfg.to_dict(), "recipe": dataclasses.asdict(rec), "seconds": round(time.time() - started, 2)}


def _train_one_epoch(train_net, net, loader, optimizer, scheduler, ema, rec: Recipe, st: RunState,
                     opts: TrainOptions, ddp: Dist, device, steps_per_epoch, out, run_meta, writer):
    train_net.train()
    total_loss, images_seen = 0.0, 0
    bar = None
    if opts.progress and ddp.main:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch, initial=st.step_in_epoch, desc=f"epoch {st.epoch + 1}/{rec.epochs}",
                   leave=False, dynamic_ncols=True)
    for images, labels, bad in loader:
        for path, reason in bad:
            st.bad_files.append([path, reason])
            if ddp.main:
                print(f"skipped unreadable image {path}: {reason}", flush=True)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if opts.float64:
            images = images.double()
        if opts.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.amp):
            logits = train_net(images)
        loss = F.cross_entropy(_full(logits), labels, label_smoothing=rec.label_smoothing) if len(labels) else \
            logits.sum() * 0.0
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {st.epoch + 1}, step {st.step_in_epoch + 1}; "
                f"the last good checkpoint is kept in {out / 'checkpoints'}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(net, step=st.global_step)
        st.step_in_epoch += 1
        st.global_step += 1
        total_loss += float(loss.detach()) * len(labels)
        images_seen += len(labels)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if writer is not None and st.global_step % 50 == 0:
            writer.add_scalar("train_loss_step", float(loss.detach()), st.global_step)
        mid_epoch = st.step_in_epoch < steps_per_epoch
        if ddp.main and mid_epoch and opts.checkpoint_every and st.global_step % opts.checkpoint_every == 0:
            _checkpoint(net, optimizer, scheduler, ema, st, net.config, run_meta, out, opts.keep_last)
        if opts.max_steps and st.global_step >= opts.max_steps:
            break
    if bar is not None:
        bar.close()
    return total_loss, images_seen


def _tensorboard(out: Path):
    # TensorBoard imports TensorFlow when it is installed (it is, for `mobilenet convert/export`)
    # unless `tensorboard.compat.notf` exists, its documented switch to the built-in TF stub.
    # Writing event files needs only the stub; loading TF here would cost seconds, print TF's
    # log lines, and crash a later torch.compile (triton loaded after TF segfaults).
    import sys
    import types

    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _latest_state(out: Path) -> Path | None:
    states = sorted((out / "checkpoints").glob("step-*.pt"))
    return states[-1] if states else None


def _checkpoint(net, optimizer, scheduler, ema, st: RunState, cfg: MobileNetConfig, run_meta, out: Path,
                keep_last: int) -> None:
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "rng": _rng_state(),
        "run_state": json.dumps(dataclasses.asdict(st)),
        "model_config": cfg.to_json(),
        "run": json.dumps(run_meta),
    }
    save_state(state, out / "checkpoints" / f"step-{st.global_step:09d}.pt")
    for old in sorted((out / "checkpoints").glob("step-*.pt"))[:-keep_last]:
        old.unlink(missing_ok=True)


def eval_checkpoint(checkpoint: str, data: str | None = None, batch_size: int = 256, workers: int = 0,
                    device: str = "auto") -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint on ``data`` (default: the data it was trained on)."""
    from mobilenets.weights.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    if data is None:
        data = meta.get("data")
    dev = pick_device(device)
    augment = Augment.for_eval(meta)
    bundle = load_data(data, model.config.resolution, augment)
    if len(bundle.classes) != model.config.num_classes:
        raise ValueError(f"the data has {len(bundle.classes)} classes but the model {model.config.num_classes}")
    loader = DataLoader(bundle.val, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad)
    result = evaluate(model.to(dev), loader, dev)
    return {"checkpoint": str(checkpoint), "data": data if data is not None else "digits", **result}
