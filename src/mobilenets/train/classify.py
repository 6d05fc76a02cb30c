"""Image classification through the generic loop: ``mobilenet train`` and ``mobilenet eval``.

:func:`train` resolves the model, the recipe and the data (ImageNet-style folders, or the
built-in digits) into a :class:`~mobilenets.train.tasks.ClassificationTask` and hands it to
:func:`~mobilenets.train.loop.fit`; :func:`eval_checkpoint` measures a checkpoint's top-1/top-5.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch.utils.data import DataLoader

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import resolve_config
from mobilenets.train.loop import StepContext, evaluate, fit, read_run_config
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe, get_recipe
from mobilenets.train.tasks import ClassificationTask
from mobilenets.utils.device import resolve_device

# The built-in digits data (1,347 training images) needs far fewer epochs and a smaller batch than
# the ImageNet-sized presets; measured: the paper preset reaches 98-99 % test top-1 by epoch 25.
DIGITS_RECIPE = {"epochs": 30, "batch_size": 64}
# The default model of `mobilenet train` (sized for the digits).
DEFAULT_MODEL = MobileNetConfig(alpha=0.5, resolution=32)


def augment_for(recipe: Recipe):
    """The data augmentation a recipe asks for."""
    from mobilenets.data.datasets import Augment

    return Augment(crop_min_area=recipe.crop_min_area, hflip=recipe.hflip, color_jitter=recipe.color_jitter,
                   randaugment=recipe.randaugment)


def _resumed(opts: TrainOptions, recipe_overrides: dict[str, Any] | None, model_args: dict[str, Any],
             log) -> tuple[MobileNetConfig, Recipe, str | None]:
    """The model, recipe and data of the run being resumed; says which asked-for changes are not
    applied (a resumed run continues exactly what was started)."""
    saved = read_run_config(opts.output)
    cfg = MobileNetConfig.from_dict(saved["model"])
    rec = Recipe.from_dict(saved["recipe"])
    ignored = [f"{k}={v!r} (the run has {getattr(rec, k)!r})" for k, v in (recipe_overrides or {}).items()
               if getattr(rec, k, None) != v]
    ignored += [f"{k}={v!r} (the run has {getattr(cfg, k)!r})" for k, v in model_args.items()
                if v is not None and k != "model" and getattr(cfg, k, None) != v]
    if ignored:
        log(f"resuming with the run's own recipe and model; not applied: {', '.join(ignored)}")
    return cfg, rec, saved.get("data")


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
    log: Any = print,
) -> dict[str, Any]:
    """Train a MobileNet classifier on ``data`` (an ImageNet-style folder with ``train/`` and
    ``val/``; None: the built-in digits); returns a summary (final metrics, run folder, cost).
    ``model`` is a registry name, with ``alpha``/``resolution``/``variant``/``model_overrides`` over it
    (default: α 0.5 at 32 px); ``recipe`` a preset name or a :class:`Recipe`."""
    opts = options or TrainOptions()
    if opts.resume:
        if not opts.output:
            raise MobileNetsError("resume=True needs the run's output folder")
        model_args = dict(model=model, alpha=alpha, resolution=resolution, variant=variant, **(model_overrides or {}))
        cfg, rec, data = _resumed(opts, recipe_overrides, model_args, log)
    else:
        rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
        if data is None:
            rec = rec.replace(**{k: v for k, v in DIGITS_RECIPE.items() if k not in (recipe_overrides or {})})
        if recipe_overrides:
            rec = rec.replace(**recipe_overrides)
        cfg = resolve_config(model, alpha=alpha, resolution=resolution, variant=variant, default=DEFAULT_MODEL,
                             **(model_overrides or {}))
    task = ClassificationTask.load(data, cfg, augment_for(rec), label_smoothing=rec.label_smoothing)
    summary = fit(task, rec, opts, log=log)
    metrics = summary["metrics"]
    return {"output": summary["output"], "epochs": summary["epochs"], "steps": summary["steps"],
            "val_top1": metrics.get("top1"), "val_top5": metrics.get("top5"),
            "best_top1": summary["best"] if summary["best"] is not None else -1.0,
            "bad_files": summary["bad_files"], "model": summary["model"], "recipe": dataclasses.asdict(rec),
            "seconds": summary["seconds"]}


def eval_checkpoint(checkpoint: str, data: str | None = None, batch_size: int = 256, workers: int = 0,
                    device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint on ``data`` (default: the data it was trained on), evaluated
    with the preprocessing the checkpoint records."""
    from mobilenets.data.datasets import Augment, load_data
    from mobilenets.weights.checkpoint import load_checkpoint

    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint)
    if data is None:
        data = meta.get("data")
    bundle = load_data(data, model.config.resolution, Augment.for_eval(meta))
    if len(bundle.classes) != model.config.num_classes:
        raise MobileNetsError(f"the data has {len(bundle.classes)} classes but the model {model.config.num_classes}")
    task = ClassificationTask(model.config, bundle, data=data)
    loader = DataLoader(bundle.val, batch_size=batch_size, num_workers=workers, collate_fn=task.collate)
    result = evaluate(model.to(dev), loader, task, StepContext(dev), progress=progress)
    return {"checkpoint": str(checkpoint), "data": data if data is not None else "digits", **result}
