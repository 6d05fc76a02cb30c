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
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from mobilenets.errors import MobileNetsError, resume_hint
from mobilenets.infer.context import StepContext, prepare_model
from mobilenets.infer.loop import evaluate
from mobilenets.train.distributed import Dist, convert_sync_batchnorm, init_distributed, local_rank
from mobilenets.train.logs import BadFileLog, RunLog
from mobilenets.train.optim import build_ema, build_optimizer, build_scheduler
from mobilenets.train.options import TrainingDiverged, TrainOptions
from mobilenets.train.recipes import Recipe
from mobilenets.train.runner import check_folder
from mobilenets.train.sampler import ResumableSampler, SeededDataset
from mobilenets.train.state import RunState, latest_state, new_run_dir, rng_state, save_checkpoint, set_rng_state
from mobilenets.train.tasks import Task
from mobilenets.utils.device import resolve_device
from mobilenets.utils.scoped import deterministic_algorithms, torch_threads
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


def on_device(task: Task, inputs: Any, targets: Any, ctx: StepContext) -> tuple[Any, Any]:
    """A batch moved to the run's device (:meth:`StepContext.prepare`), then the task's
    :meth:`~mobilenets.train.tasks.Task.on_device` hook under the run's autocast, without gradients."""
    inputs, targets = ctx.prepare(inputs), ctx.prepare(targets)
    with torch.no_grad(), ctx.autocast():
        return task.on_device(inputs, targets, ctx)


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
    builds ``task`` and ``recipe`` from the run's ``config.json`` (the training commands do so
    through :func:`mobilenets.train.runner.open_run`).

    The caller's process is left as it was: its torch/Python/NumPy random states are restored
    (the run seeds its own from ``options.seed``), torch's thread count is ``options.threads``
    only inside the run, and a process group is destroyed only if ``fit`` created it. A run that
    fails or is interrupted before its first checkpoint removes the folder it created (there is
    nothing to resume in it)."""
    opts = options or TrainOptions()
    ctx = StepContext(resolve_device(opts.device, local_rank()), opts.amp, opts.channels_last, opts.float64)
    saved_rng = rng_state()
    try:
        with deterministic_algorithms(opts.deterministic), torch_threads(opts.threads):
            return _fit(task, recipe, opts, ctx, extra_meta or {}, log)
    finally:
        set_rng_state(saved_rng)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _fit(task: Task, rec: Recipe, opts: TrainOptions, ctx: StepContext, extra: dict[str, Any], log) -> dict[str, Any]:
    device = ctx.device
    ddp = init_distributed(device)
    try:
        return _fit_in_group(task, rec, opts, ctx, extra, log, ddp)
    finally:
        if ddp.created and dist.is_initialized():
            dist.destroy_process_group()


def _fit_in_group(task: Task, rec: Recipe, opts: TrainOptions, ctx: StepContext, extra: dict[str, Any], log,
                  ddp: Dist) -> dict[str, Any]:
    device = ctx.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _seed_everything(opts.seed)

    out = Path(opts.output) if opts.output else new_run_dir()
    check_folder(out, opts.resume)
    state_path = latest_state(out) if opts.resume else None
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
    cfg = task.model_config(net)
    run = Run(task=task, recipe=rec, opts=opts, ctx=ctx, ddp=ddp, out=out, net=net, optimizer=optimizer,
              scheduler=build_scheduler(optimizer, rec, steps_per_epoch), ema=build_ema(net, rec),
              steps_per_epoch=steps_per_epoch, log=log,
              meta={"task": task.name, "model": cfg.to_dict() if cfg is not None else None,
                    "recipe": dataclasses.asdict(rec), **task.run_meta(), "options": dataclasses.asdict(opts),
                    "world_size": ddp.world, **extra})
    if state_path is not None:
        run.restore(state_path)
    created = False
    if state_path is None and ddp.main:
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(run.meta, indent=2))
    if ddp.main:
        task.write_files(out)
    try:
        summary = _train_epochs(run, sampler, train_set, val_set)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_after_interrupt(out, created, ddp.main)) from None
    except BaseException:
        if created and latest_state(out) is None:
            shutil.rmtree(out, ignore_errors=True)  # nothing to resume in it: leave nothing half-written
        raise
    if ddp.main:
        summary.update(task.finish(out, summary))
    return summary


def _after_interrupt(out: Path, created: bool, main: bool) -> str:
    """What an interrupted run leaves, in one line (the KeyboardInterrupt's message): the folder
    removed when nothing was checkpointed yet and the run created it, else how to continue it
    (in the caller's words, :func:`mobilenets.errors.resume_hint`)."""
    state = latest_state(out)
    if state is None and created:
        if main:
            shutil.rmtree(out, ignore_errors=True)  # nothing to resume in it: leave nothing half-written
        return f"stopped before the first checkpoint; nothing kept ({out} removed)"
    again, over = resume_hint(out)
    if state is None:
        return f"stopped before the first checkpoint of {out}; to start it again from scratch {again}"
    return f"{out} keeps its checkpoint {state.name}; to continue it {again}"


@dataclass
class Run:
    """What one training run holds while it trains: the task and recipe, where and how it runs,
    the model and its optimisation state, the run folder and its metadata."""

    task: Task
    recipe: Recipe
    opts: TrainOptions
    ctx: StepContext
    ddp: Dist
    out: Path
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Any
    steps_per_epoch: int
    meta: dict[str, Any]
    log: Any = print
    st: RunState = dataclasses.field(default_factory=RunState)

    def restore(self, state_path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, EMA, position and RNG states."""
        saved = load_state(state_path)
        self.net.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None and saved.get("ema") is not None:
            self.ema.module.load_state_dict(saved["ema"])
        self.st = RunState.from_json(saved["run_state"])
        set_rng_state(saved["rng"])
        st, epochs = self.st, self.recipe.epochs
        if self.ddp.main and st.epoch >= epochs:
            self.log(f"{self.out} has finished its {epochs} epochs ({st.global_step} steps, {state_path.name}): "
                     f"nothing left to train")
        elif self.ddp.main:
            self.log(f"resumed {self.out} from {state_path.name}: epoch {st.epoch + 1}/{epochs}, step "
                     f"{st.step_in_epoch}/{self.steps_per_epoch} of it ({st.global_step} steps done)")

    def checkpoint(self) -> None:
        cfg = self.task.model_config(self.net)
        save_checkpoint(self.out, self.st, model=self.net, optimizer=self.optimizer, scheduler=self.scheduler,
                        ema=self.ema, model_config_json=cfg.to_json() if cfg is not None else "null",
                        run_meta=self.meta, keep_last=self.opts.keep_last)

    def save_weights(self, value: float | None) -> None:
        """``last.safetensors``, and ``best.safetensors`` when the monitored ``value`` improved."""
        eval_model = self.ema.module if self.ema is not None else self.net
        extra = {"run": json.dumps(self.meta)}
        cfg = self.task.model_config(self.net)
        if value is not None and _better(self.task, value, self.st.best):
            self.st.best = value
            save_weights(eval_model, self.out / "best.safetensors", cfg, extra)
        save_weights(eval_model, self.out / "last.safetensors", cfg, extra)

    def step_limit_reached(self) -> bool:
        return bool(self.opts.max_steps) and self.st.global_step >= self.opts.max_steps


def _train_epochs(run: Run, sampler: ResumableSampler, train_set, val_set) -> dict[str, Any]:
    task, rec, opts, ctx, ddp, st, out = run.task, run.recipe, run.opts, run.ctx, run.ddp, run.st, run.out
    train_net: nn.Module = run.net
    if ddp.world > 1:
        device = ctx.device
        train_net = nn.parallel.DistributedDataParallel(run.net, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if opts.compile:
        train_net = torch.compile(train_net)
    train_loader = train_loader_for(train_set, sampler, task, opts.workers, opts.seed, rec.batch_size // ddp.world,
                                    pin_memory=ctx.device.type == "cuda")
    val_loader = None if val_set is None else DataLoader(
        val_set, batch_size=opts.eval_batch_size or task.eval_batch_size, shuffle=False, num_workers=opts.workers,
        collate_fn=task.collate, generator=torch.Generator().manual_seed(opts.seed))
    bad_log = BadFileLog(out / "bad_files.txt", st.bad_files, run.log if ddp.main else None)
    run_log = RunLog(out, enabled=ddp.main)
    last_eval: dict[str, float] = {}
    started = time.time()
    try:
        while st.epoch < rec.epochs:
            sampler.set_epoch(st.epoch, st.step_in_epoch)
            epoch_loss, epoch_images = _train_one_epoch(run, train_net, train_loader, run_log, bad_log)
            if run.step_limit_reached() and st.step_in_epoch < run.steps_per_epoch:
                if ddp.main:  # never lose finished work
                    run.checkpoint()
                break
            eval_model = run.ema.module if run.ema is not None else run.net
            if val_loader is not None:
                last_eval = evaluate(eval_model, val_loader, task, ctx, progress=opts.progress and ddp.main,
                                     desc=f"val {st.epoch + 1}/{rec.epochs}")
            record = {"epoch": st.epoch + 1, "step": st.global_step, "train_loss": epoch_loss / max(epoch_images, 1),
                      **{f"val_{k}": v for k, v in last_eval.items() if k != "images"},
                      "lr": run.optimizer.param_groups[0]["lr"], "bad_files": len(st.bad_files),
                      "time_s": round(time.time() - started, 2)}
            st.epoch, st.step_in_epoch = st.epoch + 1, 0
            if ddp.main:
                run_log.epoch(record)
                # the per-epoch line stays when the bar goes (also with progress=False)
                val = task.describe(last_eval) if last_eval else "no validation data"
                run.log(f"epoch {record['epoch']}/{rec.epochs}  train loss {record['train_loss']:.4f}  {val}  "
                        f"lr {record['lr']:.3g}  {record['time_s']:.0f} s")
                run.save_weights(last_eval.get(task.monitor))
                bad_log.flush()
                run.checkpoint()
            if run.step_limit_reached():
                break
    finally:
        run_log.close()
        if ddp.main:
            bad_log.flush()
    return {"output": str(out), "epochs": st.epoch, "steps": st.global_step, "metrics": last_eval,
            "monitor": task.monitor, "best": st.best, "bad_files": st.bad_files, "recipe": dataclasses.asdict(rec),
            "model": run.meta["model"], "seconds": round(time.time() - started, 2)}


def _train_one_epoch(run: Run, train_net: nn.Module, loader, run_log: RunLog, bad_log: BadFileLog) -> tuple[float, int]:
    task, st, ctx = run.task, run.st, run.ctx
    task.train_mode(train_net)
    total_loss, images_seen = 0.0, 0
    bar = None
    if run.opts.progress and run.ddp.main:
        from tqdm import tqdm

        bar = tqdm(total=run.steps_per_epoch, initial=st.step_in_epoch,
                   desc=f"epoch {st.epoch + 1}/{run.recipe.epochs}", leave=False, dynamic_ncols=True, file=sys.stderr)
    for inputs, targets, bad in loader:
        bad_log.add(bad)
        n = task.batch_len(targets)
        inputs, targets = on_device(task, inputs, targets, ctx)
        try:
            losses = train_step(train_net, task, inputs, targets, run.optimizer, ctx, scheduler=run.scheduler,
                                ema=run.ema, ema_model=run.net, step=st.global_step)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc} at epoch {st.epoch + 1}, step {st.step_in_epoch + 1}; the last good "
                                   f"checkpoint is kept in {run.out / 'checkpoints'}") from None
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
        every = run.opts.checkpoint_every
        if run.ddp.main and st.step_in_epoch < run.steps_per_epoch and every and st.global_step % every == 0:
            bad_log.flush()
            run.checkpoint()
        if run.step_limit_reached():
            break
    if bar is not None:
        bar.close()
    return total_loss, images_seen


__all__ = ["Run", "StepContext", "evaluate", "fit", "on_device", "prepare_model",
           "train_loader_for", "train_step"]
