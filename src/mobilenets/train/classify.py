"""Image classification through the generic loop: ``mobilenet train`` and ``mobilenet eval``.

:func:`train` resolves the model, the recipe and the data (ImageNet-style folders, or the
built-in digits) into a :class:`~mobilenets.train.tasks.ClassificationTask` and hands it to
:func:`~mobilenets.train.loop.fit`; with ``init`` the model starts from the weights of any
checkpoint, run folder or converted model folder (a new classifier where the classes differ).
:func:`eval_checkpoint` measures the top-1/top-5 of a checkpoint or of an exported file (ONNX,
TFLite, ExecuTorch, TorchScript: run by :func:`~mobilenets.deploy.runtime.load_runner` on the
same data path, with the preprocessing its sidecar records).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import resolve_config
from mobilenets.train.loop import StepContext, evaluate, fit
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe, get_recipe
from mobilenets.train.runner import is_main
from mobilenets.train.tasks import ClassificationTask
from mobilenets.utils.device import resolve_device
from mobilenets.weights.convert import TARGETS

# The built-in digits data (1,347 training images) needs far fewer epochs and a smaller batch than
# the ImageNet-sized presets; measured: the paper preset reaches 98-99 % test top-1 by epoch 25.
DIGITS_RECIPE = {"epochs": 30, "batch_size": 64}
# The default model of `mobilenet train` (sized for the digits).
DEFAULT_MODEL = MobileNetConfig(alpha=0.5, resolution=32)
CONVERT_TARGETS = tuple(t for t in TARGETS if t != "mobilenets")  # `convert --to` other frameworks
_KERAS_PROBE = "conversion-probe.not-keras"  # a file name to_keras refuses (see conversion_problem)


def augment_for(recipe: Recipe, preprocessing=None):
    """The data augmentation a recipe asks for, normalised as ``preprocessing`` says (default:
    the package's, mean = std = 0.5)."""
    from mobilenets.data.datasets import Augment

    aug = Augment(crop_min_area=recipe.crop_min_area, hflip=recipe.hflip, color_jitter=recipe.color_jitter,
                  randaugment=recipe.randaugment)
    if preprocessing is None:
        return aug
    return dataclasses.replace(aug, mean=preprocessing.mean, std=preprocessing.std, eval_crop=preprocessing.crop_pct,
                               interpolation=preprocessing.interpolation)


def conversion_problem(config: MobileNetConfig, target: str) -> str | None:
    """Why a model of ``config`` cannot be converted ``to`` ``target`` ("keras" or "timm") by
    :func:`mobilenets.weights.convert.convert`, or None if it can: the converters' own refusals."""
    from mobilenets.models.mobilenet import MobileNet

    if target not in CONVERT_TARGETS:
        raise MobileNetsError(f"unknown conversion target {target!r}; choose one of {', '.join(CONVERT_TARGETS)}")
    model = MobileNet(config)
    try:
        if target == "timm":
            from mobilenets.weights.convert.timm import timm_model_name

            timm_model_name(model)
        else:
            from mobilenets.weights.convert.keras import to_keras

            # to_keras refuses an architecture that does not map before anything else; a path it
            # does not take (not KERAS_SUFFIXES) then stops it before Keras is loaded or a model built.
            to_keras(model, _KERAS_PROBE)
    except MobileNetsError as exc:
        return None if target == "keras" and _KERAS_PROBE in str(exc) else str(exc)
    return None


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr)


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
    init: str | os.PathLike | None = None,
    convert_to: str | None = None,
    log: Any = print,
    warn: Any = None,
    task_class: type[ClassificationTask] = ClassificationTask,
    task_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a MobileNet classifier on ``data`` (an ImageNet-style folder with ``train/`` and
    ``val/``; None: the built-in digits); returns a summary (final metrics, run folder, cost).
    ``model`` is a registry name, with ``alpha``/``resolution``/``variant``/``model_overrides`` over it
    (default: α 0.5 at 32 px); ``recipe`` a preset name or a :class:`Recipe`.

    ``init``: start from the weights of a checkpoint, run folder or converted model folder
    (:mod:`mobilenets.train.init`); the architecture and preprocessing are theirs (``resolution``,
    ``dropout`` may change; an architecture field that differs is refused), the classifier is new
    where the classes differ. ``convert_to`` ("keras" or "timm"): the run is meant to be converted
    there; ``warn`` (default: one line on stderr) is told if its model cannot be. ``task_class`` (a
    ClassificationTask subclass, built with ``task_options`` as extra keywords) changes how the run
    trains, e.g. fine-tuning's frozen body or lower body learning rate
    (:mod:`mobilenets.studies.finetune`). The run folder, resume and the recorded request follow
    :func:`mobilenets.train.runner.open_run`."""
    from mobilenets.train.init import init_config, init_weights, load_init
    from mobilenets.train.runner import open_run, record_path, request_of, task_recipe

    warn = warn or _stderr_line
    if convert_to is not None and convert_to not in CONVERT_TARGETS:
        raise MobileNetsError(f"unknown convert_to {convert_to!r}; choose one of {', '.join(CONVERT_TARGETS)}")
    request = request_of(data=record_path(data), model=model, alpha=alpha, resolution=resolution, variant=variant,
                         recipe=recipe, overrides={**(recipe_overrides or {}), **(model_overrides or {})},
                         init=record_path(init), convert_to=convert_to, task_options=task_options or None)
    opts, saved = open_run(options, task_class.name, request, log)
    extra: dict[str, Any] = {"request": request}
    init_model = init_classes = pre = None
    if saved is not None:
        cfg = MobileNetConfig.from_dict(saved["model"])
        rec = Recipe.from_dict(saved["recipe"])
        data = saved.get("data")
        extra = {"request": saved.get("request") or {}, **({"init": saved["init"]} if saved.get("init") else {})}
        task_options = saved.get("task_options", task_options)
        from mobilenets.data.preprocess import Preprocessing

        pre = Preprocessing.from_dict(saved["preprocessing"]) if saved.get("preprocessing") else None
    else:
        rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
        if data is None:
            rec = rec.replace(**{k: v for k, v in DIGITS_RECIPE.items() if k not in (recipe_overrides or {})})
        if recipe_overrides:
            rec = rec.replace(**recipe_overrides)
        rec = task_recipe(rec, task_class.recipe_fields)
        data = record_path(data)  # recorded so that export, eval and resume find it from anywhere
        if init is not None:
            init_model, pre, init_classes = load_init(init)
            asked = dict(alpha=alpha, variant=variant, **(model_overrides or {}))
            cfg = init_config(init_model.config, init, model, resolution, asked)
        else:
            cfg = resolve_config(model, alpha=alpha, resolution=resolution, variant=variant, default=DEFAULT_MODEL,
                                 **(model_overrides or {}))
    from mobilenets.data.datasets import load_data

    augment = augment_for(rec, pre)
    bundle = load_data(data, cfg.resolution, augment)
    weights = None
    if init_model is not None:
        weights, what = init_weights(init_model, init_classes, bundle.classes)
        if is_main():
            log(f"init from {os.fspath(init)}: {what}")
        extra["init"] = {"path": record_path(init), "classifier": what}
    if task_options:
        extra["task_options"] = task_options
    if convert_to is not None:
        extra["convert_to"] = convert_to  # checked (and warned about) at the start of the run
    task = task_class(cfg, bundle, data=data, augment=augment, label_smoothing=rec.label_smoothing,
                      init_weights=weights, **(task_options or {}))
    if convert_to is not None:
        problem = conversion_problem(task.config, convert_to)
        if problem and is_main():
            warn(f"warning: this run cannot be converted to {convert_to}: {problem}")
    summary = fit(task, rec, opts, extra_meta=extra, log=log)
    metrics = summary["metrics"]
    rest = {k: v for k, v in summary.items() if k not in ("metrics", "best", "monitor")}
    return {**rest, "val_top1": metrics.get("top1"), "val_top5": metrics.get("top5"),
            "best_top1": summary["best"] if summary["best"] is not None else -1.0}


# --------------------------------------------------------------------------- evaluation


class _Relabelled(Dataset):
    """A dataset whose labels are mapped to the model's class indices (unreadable items pass)."""

    def __init__(self, base: Dataset, mapping: list[int]) -> None:
        self.base, self.mapping = base, mapping

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        item = self.base[index]
        return item if not isinstance(item, tuple) else (item[0], self.mapping[int(item[1])])


class _RunnerModule(nn.Module):
    """An exported file's runner as a module, so that evaluation runs the one evaluation loop."""

    def __init__(self, runner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(x.detach().float().cpu().numpy()))


def label_mapping(model_classes: list[str] | None, num_classes: int, data_classes: list[str]) -> list[int]:
    """For each of the data's classes, the model's class index: by name where the model records
    its class names (the data may hold a subset of them), else by position (the counts must agree)."""
    if model_classes:
        unknown = [c for c in data_classes if c not in model_classes]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise MobileNetsError(f"the data's class folders {shown} are not among the model's {len(model_classes)} "
                                  f"classes")
        return [list(model_classes).index(c) for c in data_classes]
    if len(data_classes) != num_classes:
        raise MobileNetsError(f"the data has {len(data_classes)} classes but the model {num_classes}")
    return list(range(num_classes))


def _eval_model(checkpoint: str, ctx: StepContext, engine_threads: int):
    """``(model as a module on ctx's device, its config, class names, preprocessing, recorded
    training data)`` of a checkpoint or an exported file; the data is a folder, ``"digits"``
    (DIGITS_SOURCE) or None (not recorded)."""
    from mobilenets.deploy.runtime import is_exported_model, open_exported
    from mobilenets.infer.context import prepare_model

    if is_exported_model(checkpoint):
        if ctx.device.type != "cpu":
            raise MobileNetsError(f"{checkpoint} is an exported model: its engine runs on the CPU, not {ctx.device}")
        if ctx.amp or ctx.channels_last:
            raise MobileNetsError(f"{checkpoint} is an exported model: its engine fixes its own precision and "
                                  f"memory format (amp and channels_last apply to checkpoints)")
        runner = open_exported(checkpoint, threads=engine_threads)
        pre, meta = runner.preprocessing, runner.meta
        cfg = MobileNetConfig.from_dict(meta["model"])
        return _RunnerModule(runner), cfg, runner.classes, pre, meta.get("trained_on")
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.deploy.sources import recorded_data
    from mobilenets.weights.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    pre = Preprocessing.from_dict(meta.get("preprocessing") or meta, resolution=model.config.resolution)
    return prepare_model(model, ctx), model.config, meta.get("classes"), pre, recorded_data(meta)


def eval_checkpoint(checkpoint: str, data: str | None = None, batch_size: int = 256, workers: int = 0,
                    device: str = "auto", progress: bool = False, engine_threads: int = 2, *, amp: bool = False,
                    channels_last: bool = False) -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint, or of an exported file (its sidecar's preprocessing and
    classes; ``engine_threads``: its runtime's CPU threads), on ``data`` (default: the data it was trained on),
    evaluated with the preprocessing it records. Labels are matched to the model's classes by
    name where it records them. ``device``, ``amp`` (bf16 autocast) and ``channels_last`` say how
    a checkpoint runs (:func:`~mobilenets.infer.loop.evaluate`, the training loop's validation);
    an exported file runs in its engine on the CPU."""
    from mobilenets.data.datasets import DIGITS_SOURCE, Augment, load_data
    from mobilenets.deploy.runtime import is_exported_model

    if is_exported_model(checkpoint) and str(device).strip().lower() == "auto":
        device = "cpu"  # auto: where the exported file's runtime runs
    ctx = StepContext(resolve_device(device), amp=amp, channels_last=channels_last)
    module, cfg, classes, pre, recorded = _eval_model(checkpoint, ctx, engine_threads)
    if data is None and recorded is None:
        raise MobileNetsError(f"{checkpoint} records no training data to evaluate on; pass data=DIR "
                              f"(an ImageNet-style folder: its val/ is evaluated)")
    if data is None and recorded != DIGITS_SOURCE:
        data = recorded
    augment = Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)
    bundle = load_data(data, cfg.resolution, augment)
    mapping = label_mapping(classes, cfg.num_classes, bundle.classes)
    val = bundle.val if mapping == list(range(len(mapping))) else _Relabelled(bundle.val, mapping)
    task = ClassificationTask(cfg, bundle, data=data)
    loader = DataLoader(val, batch_size=batch_size, num_workers=workers, collate_fn=task.collate,
                        pin_memory=ctx.device.type == "cuda")
    result = evaluate(module, loader, task, ctx, progress=progress)
    return {"checkpoint": str(checkpoint), "data": data if data is not None else DIGITS_SOURCE, **result}
