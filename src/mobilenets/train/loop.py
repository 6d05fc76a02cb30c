"""The one training loop, generic over tasks (:class:`~mobilenets.train.tasks.Task`).

The loop owns devices, bf16 autocast, channels_last, float64 runs, DDP (torchrun), SyncBatchNorm,
weight EMA, checkpoints, exact resume, progress bars, the per-epoch line, ``metrics.jsonl`` and
TensorBoard logs, unreadable-file reports and non-finite losses; the task owns the model, the
loss, the metrics and the data. :func:`train_step` is the single optimisation step, also what
``benchmarks/train_throughput.py`` times.

Resume is exact: the data order and every sample's augmentation are functions of (seed, epoch,
sample index) alone (:mod:`mobilenets.train.sampler`), and a checkpoint holds the model,
optimizer, scheduler, EMA, RNG states and the step reached inside the epoch
(:mod:`mobilenets.train.state`). So a run killed anywhere and resumed from its last checkpoint
follows the same path as one never stopped (bit for bit with ``deterministic``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from mobilenets.errors import MobileNetsError
from mobilenets.infer.context import StepContext, prepare_model
from mobilenets.infer.loop import evaluate
from mobilenets.train.distributed import Dist, convert_sync_batchnorm, init_distributed, local_rank
from mobilenets.train.logs import BadFileLog, RunLog
from mobilenets.train.optim import build_ema, build_optimizer, build_scheduler
from mobilenets.train.options import TrainingDiverged, TrainOptions
from mobilenets.train.recipes import Recipe
from mobilenets.train.sampler import ResumableSampler, SeededDataset
from mobilenets.train.state import RunState, latest_state, new_run_dir, save_checkpoint, set_rng_state
from mobilenets.train.tasks import Task
from mobilenets.utils.device import resolve_device
from mobilenets.utils.scoped import deterministic_algorithms
from mobilenets.weights.checkpoint import load_state, save_weights


def train_step(model: nn.Module, task: Task, inputs: Any, targets: Any, optimizer: torch.optim.Optimizer,
               ctx: StepContext, *, scheduler=None, ema=None, ema_model: nn.Module | None = None,
               step: int = 0) -> dict[str, torch.Tensor]:
    """One optimisation step on a prepared batch; returns the task's loss parts (not detached).
    Raises :class:`TrainingDiverged` before touching the weights if the loss is not finite."""
    with ctx.autocast():
        outputs = task.forward(model, inputs)
    losses = task.loss(outputs, targets)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if ema is not None:
        ema.update(ema_model if ema_model is not None else model, step=step)
    return losses


def train_loader_for(train_set, sampler: ResumableSampler, task: Task, workers: int, seed: int,
                     batch_size: int | None = None, pin_memory: bool = False) -> DataLoader:
    """The training DataLoader: items drawn in the sampler's order, each augmented under its own
    seed (:class:`SeededDataset`), so batches are the same for any number of ``workers``."""
    return DataLoader(SeededDataset(train_set), batch_size=batch_size or sampler.batch_size // sampler.world,
                      sampler=sampler, num_workers=workers, collate_fn=task.collate, pin_memory=pin_memory,
                      # own generator: creating an iterator must not draw from the global RNG, or a
                      # resumed run's dropout masks would drift from the original
                      generator=torch.Generator().manual_seed(seed))


def _better(task: Task, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if task.monitor_mode == "max" else value < best


def fit(task: Task, recipe: Recipe, options: TrainOptions | None = None,
        extra_meta: dict[str, Any] | None = None, log: Any = print) -> dict[str, Any]:
    """Train ``task`` with ``recipe``, run as ``options`` say; returns the summary (run folder,
    epochs, steps, last and best validation metrics, unreadable files, seconds).

    With ``options.resume`` the newest checkpoint in ``options.output`` is continued; the caller
    builds ``task`` and ``recipe`` from the run's ``config.json`` (:func:`read_run_config`)."""
    opts = options or TrainOptions()
    ctx = StepContext(resolve_device(opts.device, local_rank()), opts.amp, opts.channels_last, opts.float64)
    with deterministic_algorithms(opts.deterministic):
        return _fit(task, recipe, opts, ctx, extra_meta or {}, log)


def read_run_config(output: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the run in ``output`` (for resuming it)."""
    out = Path(output)
    if latest_state(out) is None:
        raise MobileNetsError(f"nothing to resume in {out}: no checkpoints/step-*.pt")
    return json.loads((out / "config.json").read_text())


def _fit(task: Task, rec: Recipe, opts: TrainOptions, ctx: StepContext, extra: dict[str, Any], log) -> dict[str, Any]:
    device = ctx.device
    ddp = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    np.random.seed(opts.seed)

    out = Path(opts.output) if opts.output else new_run_dir()
    state_path = latest_state(out) if opts.resume else None
    if opts.resume and state_path is None:
        raise MobileNetsError(f"nothing to resume in {out}: no checkpoints/step-*.pt")
    if not opts.resume and (out / "config.json").exists():
        raise MobileNetsError(f"{out} already holds a run; resume it (resume=True) or choose another output folder")
    if ddp.world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it

    train_set, val_set = task.datasets()
    net = prepare_model(task.build_model(), ctx)
    if ddp.world > 1 and opts.sync_bn:
        net = convert_sync_batchnorm(net, device)
    optimizer = build_optimizer(net, rec, task.lr_scale)
    sampler = ResumableSampler(len(train_set), rec.batch_size, opts.seed, ddp.rank, ddp.world)
    steps_per_epoch = sampler.steps_per_epoch()
    if steps_per_epoch == 0:
        raise MobileNetsError(f"batch size {rec.batch_size} is larger than the training set ({len(train_set)} images)")
    scheduler = build_scheduler(optimizer, rec, steps_per_epoch)
    ema = build_ema(net, rec)
    st = RunState()
    cfg = task.model_config(net)
    run_meta = {"task": task.name, "model": cfg.to_dict() if cfg is not None else None,
                "recipe": dataclasses.asdict(rec), **task.run_meta(), "options": dataclasses.asdict(opts),
                "world_size": ddp.world, **extra}
    if state_path is not None:
        saved = load_state(state_path)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if ema is not None and saved.get("ema") is not None:
            ema.module.load_state_dict(saved["ema"])
        st = RunState.from_json(saved["run_state"])
        set_rng_state(saved["rng"])
        if ddp.main and st.epoch >= rec.epochs:
            log(f"{out} has finished its {rec.epochs} epochs ({st.global_step} steps, {state_path.name}): "
                f"nothing left to train")
        elif ddp.main:
            log(f"resumed {out} from {state_path.name}: epoch {st.epoch + 1}/{rec.epochs}, step "
                f"{st.step_in_epoch}/{steps_per_epoch} of it ({st.global_step} steps done)")
    elif ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(run_meta, indent=2))

    train_net: nn.Module = net
    if ddp.world > 1:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if opts.compile:
        train_net = torch.compile(train_net)
    train_loader = train_loader_for(train_set, sampler, task, opts.workers, opts.seed, rec.batch_size // ddp.world,
                                    pin_memory=device.type == "cuda")
    val_loader = None if val_set is None else DataLoader(
        val_set, batch_size=opts.eval_batch_size, shuffle=False, num_workers=opts.workers, collate_fn=task.collate,
        generator=torch.Generator().manual_seed(opts.seed))
    bad_log = BadFileLog(out / "bad_files.txt", st.bad_files, log if ddp.main else None)
    run_log = RunLog(out, enabled=ddp.main)
    last_eval: dict[str, float] = {}
    started = time.time()
    try:
        while st.epoch < rec.epochs:
            sampler.set_epoch(st.epoch, st.step_in_epoch)
            epoch_loss, epoch_images = _train_one_epoch(train_net, net, task, train_loader, optimizer, scheduler,
                                                        ema, rec, st, opts, ctx, ddp, steps_per_epoch, out,
                                                        run_meta, run_log, bad_log)
            if opts.max_steps and st.global_step >= opts.max_steps and st.step_in_epoch < steps_per_epoch:
                if ddp.main:  # never lose finished work
                    _checkpoint(net, optimizer, scheduler, ema, st, run_meta, out, opts, task)
                break
            eval_model = ema.module if ema is not None else net
            if val_loader is not None:
                last_eval = evaluate(eval_model, val_loader, task, ctx, progress=opts.progress and ddp.main,
                                     desc=f"val {st.epoch + 1}/{rec.epochs}")
            record = {"epoch": st.epoch + 1, "step": st.global_step, "train_loss": epoch_loss / max(epoch_images, 1),
                      **{f"val_{k}": v for k, v in last_eval.items() if k != "images"},
                      "lr": optimizer.param_groups[0]["lr"], "bad_files": len(st.bad_files),
                      "time_s": round(time.time() - started, 2)}
            st.epoch, st.step_in_epoch = st.epoch + 1, 0
            if ddp.main:
                run_log.epoch(record)
                # the per-epoch line stays when the bar goes (also with progress=False)
                val = task.describe(last_eval) if last_eval else "no validation data"
                log(f"epoch {record['epoch']}/{rec.epochs}  train loss {record['train_loss']:.4f}  {val}  "
                    f"lr {record['lr']:.3g}  {record['time_s']:.0f} s")
                extra_w = {"run": json.dumps(run_meta)}
                value = last_eval.get(task.monitor)
                if value is not None and _better(task, value, st.best):
                    st.best = value
                    save_weights(eval_model, out / "best.safetensors", task.model_config(net), extra_w)
                save_weights(eval_model, out / "last.safetensors", task.model_config(net), extra_w)
                bad_log.flush()
                _checkpoint(net, optimizer, scheduler, ema, st, run_meta, out, opts, task)
            if opts.max_steps and st.global_step >= opts.max_steps:
                break
    finally:
        run_log.close()
        if ddp.main:
            bad_log.flush()
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return {"output": str(out), "epochs": st.epoch, "steps": st.global_step, "metrics": last_eval,
            "monitor": task.monitor, "best": st.best, "bad_files": st.bad_files, "recipe": dataclasses.asdict(rec),
            "model": run_meta["model"], "seconds": round(time.time() - started, 2)}


def _checkpoint(net, optimizer, scheduler, ema, st: RunState, run_meta, out: Path, opts: TrainOptions,
                task: Task) -> None:
    cfg = task.model_config(net)
    save_checkpoint(out, st, model=net, optimizer=optimizer, scheduler=scheduler, ema=ema,
                    model_config_json=cfg.to_json() if cfg is not None else "null", run_meta=run_meta,
                    keep_last=opts.keep_last)


def _train_one_epoch(train_net, net, task: Task, loader, optimizer, scheduler, ema, rec: Recipe, st: RunState,
                     opts: TrainOptions, ctx: StepContext, ddp: Dist, steps_per_epoch: int, out: Path, run_meta,
                     run_log: RunLog, bad_log: BadFileLog) -> tuple[float, int]:
    train_net.train()
    total_loss, images_seen = 0.0, 0
    bar = None
    if opts.progress and ddp.main:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch, initial=st.step_in_epoch, desc=f"epoch {st.epoch + 1}/{rec.epochs}",
                   leave=False, dynamic_ncols=True, file=sys.stderr)
    for inputs, targets, bad in loader:
        bad_log.add(bad)
        n = task.batch_len(targets)
        try:
            losses = train_step(train_net, task, ctx.prepare(inputs), ctx.prepare(targets), optimizer, ctx,
                                scheduler=scheduler, ema=ema, ema_model=net, step=st.global_step)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc} at epoch {st.epoch + 1}, step {st.step_in_epoch + 1}; the last good "
                                   f"checkpoint is kept in {out / 'checkpoints'}") from None
        st.step_in_epoch += 1
        st.global_step += 1
        loss = float(losses["loss"].detach())
        total_loss += loss * n
        images_seen += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
        if st.global_step % 50 == 0:
            run_log.step(st.global_step, {k: float(v.detach()) for k, v in losses.items()})
        mid_epoch = st.step_in_epoch < steps_per_epoch
        if ddp.main and mid_epoch and opts.checkpoint_every and st.global_step % opts.checkpoint_every == 0:
            bad_log.flush()
            _checkpoint(net, optimizer, scheduler, ema, st, run_meta, out, opts, task)
        if opts.max_steps and st.global_step >= opts.max_steps:
            break
    if bar is not None:
        bar.close()
    return total_loss, images_seen


__all__ = ["StepContext", "evaluate", "fit", "prepare_model", "read_run_config", "train_loader_for", "train_step"]
