"""Training, evaluating and loading detectors: what ``mobilenet detect train|eval`` call.

:func:`train` resolves the data (a COCO or VOC folder, or the built-in stand-in), the detector
and the recipe into a :class:`~mobilenets.tasks.detect.task.DetectionTask` and runs it through
:func:`~mobilenets.train.loop.fit`; skipped annotations are printed in one line and listed in the
run folder's ``bad_annotations.txt``; the run ends with ``curves.png`` (loss and AP per epoch).
:func:`load_detector` reads a detection run or weights file back; :func:`eval_checkpoint` scores a
checkpoint on a split with COCO's numbers and writes the detections file and the PR plot.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.build import build_detector
from mobilenets.tasks.detect.config import DetectorConfig, make_config
from mobilenets.tasks.detect.data import DetectionSplit, load_splits, summary_line, write_bad_list
from mobilenets.tasks.detect.evaluate import coco_metrics, original_scale, plot_pr, to_results
from mobilenets.tasks.detect.task import DetectionTask, detect_recipe
from mobilenets.tasks.detect.transforms import DetectAugment
from mobilenets.train.loop import StepContext, fit, read_run_config
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe
from mobilenets.utils.device import resolve_device
from mobilenets.utils.scoped import matplotlib_backend

# The built-in stand-in (2,000 training images of 320 px, 4 classes) with the default detector:
# SSD, alpha 0.25, 160 px, trained from scratch with the modern preset, without its zoom-out (the
# stand-in's objects are already small at 160 px): sized for a 2-core CPU (see the README's figures).
STANDIN_DEFAULTS = {"detector": "ssd", "alpha": 0.25, "resolution": 160, "zoom_out": False}
STANDIN_RECIPE = {"epochs": 30, "batch_size": 32}
# Faster R-CNN's anchors (0.25-2 x 256 px) are sized for COCO at 600 px; the stand-in's objects at
# 160 px are 13-80 px, so there the base is 64 px (anchors of 16-128 px). The stand-in has 1-4
# objects an image, so 32 sampled proposals per image (TF: 64) still hold up to 8 positives, at half
# the second stage's training cost. Its two stages train with half the modern preset's lr (AdamW
# 2e-3 is at the edge for the RPN from scratch), 20 epochs.
STANDIN_FASTER_RCNN = {"anchor_base": 64, "roi_batch": 32}
STANDIN_FASTER_RCNN_RECIPE = {"epochs": 20, "lr": 1e-3}
BAD_ANNOTATIONS = "bad_annotations.txt"
# BatchNorm momentum of a detector in training (backbone, extras, heads), whatever the backbone's
# checkpoint says: torchvision's SSDLite value. Converted TF weights carry TF's decay 0.9997
# (momentum 0.0003), made for 200k-step runs: in a run of a few thousand steps the running
# statistics of the new extra layers would stay near their (0, 1) start and evaluation would run
# on statistics unlike training's (measured: AP 0.19, near-uniform scores, where 0.03 trains).
BN_MOMENTUM = 0.03


def load_data(data: str | os.PathLike | None, progress: bool = False) -> dict[str, DetectionSplit]:
    """The checked splits of ``data`` (None: the built-in stand-in, written on first use)."""
    if data is None:
        from mobilenets.tasks.detect.standin import default_standin

        data = default_standin(progress=progress)
    return load_splits(data)


def report_bad(splits: dict[str, DetectionSplit], out: Path | None, log) -> None:
    """One line about what the data checks skipped; the full list in ``out/bad_annotations.txt``."""
    listed = write_bad_list(list(splits.values()), out / BAD_ANNOTATIONS) if out is not None else None
    line = summary_line(list(splits.values()), listed)
    if line:
        log(line)


def train(data: str | None = None, detector: str | None = None, *, alpha: float | None = None,
          resolution: int | None = None, variant: str | None = None, backbone: str | None = None,
          recipe: str | Recipe = "modern", recipe_overrides: dict[str, Any] | None = None,
          detector_overrides: dict[str, Any] | None = None, zoom_out: bool | None = None,
          bn_momentum: float | None = None, options: TrainOptions | None = None, log: Any = print) -> dict[str, Any]:
    """Train a detector on ``data`` (a COCO or VOC folder; None: the built-in stand-in) and return
    the loop's summary. ``backbone``: a classification checkpoint (run folder, model folder,
    weights file) whose MobileNet the detector starts from (its alpha/padding/activation win).
    ``bn_momentum``: BatchNorm momentum in training (default :data:`BN_MOMENTUM`)."""
    opts = options or TrainOptions(eval_batch_size=16)
    if opts.resume:
        if not opts.output:
            raise MobileNetsError("resume=True needs the run's output folder")
        saved = read_run_config(opts.output)
        cfg, rec = DetectorConfig.from_dict(saved["model"]), Recipe.from_dict(saved["recipe"])
        data, augment, backbone = saved.get("data"), DetectAugment.from_dict(saved["augment"]), None
        splits = load_data(data)
    else:
        standin = data is None
        defaults = STANDIN_DEFAULTS if standin else {"detector": "ssd", "alpha": 1.0, "resolution": None}
        overrides = dict(recipe_overrides or {})
        base = detect_recipe(recipe)
        kind = detector or defaults["detector"]
        if standin:
            preset = {**STANDIN_RECIPE, **(STANDIN_FASTER_RCNN_RECIPE if kind == "faster_rcnn" else {})}
            base = base.replace(**{k: v for k, v in preset.items() if k not in overrides})
        rec = base.replace(**overrides) if overrides else base
        augment = DetectAugment.from_recipe(rec, zoom_out if zoom_out is not None or not standin
                                            else STANDIN_DEFAULTS["zoom_out"])
        splits = load_data(data, progress=opts.progress)
        if "train" not in splits:
            raise MobileNetsError(f"no training split in {data}")
        start = None
        if backbone:
            from mobilenets.weights.checkpoint import load_model

            start = load_model(backbone).config
        from mobilenets.models.config import MobileNetConfig

        base_cfg = start or MobileNetConfig(alpha=alpha if alpha is not None else defaults["alpha"],
                                            **({"variant": variant} if variant else {}))
        base_cfg = base_cfg.replace(bn_momentum=BN_MOMENTUM if bn_momentum is None else bn_momentum)
        fields = {**(STANDIN_FASTER_RCNN if standin and kind == "faster_rcnn" else {}), **(detector_overrides or {})}
        cfg = make_config(kind, backbone=base_cfg, resolution=resolution or defaults["resolution"],
                          num_classes=len(splits["train"].category_ids), **fields)
    from mobilenets.train.state import new_run_dir

    out = Path(opts.output) if opts.output else new_run_dir()
    opts = dataclasses.replace(opts, output=str(out))
    out.mkdir(parents=True, exist_ok=True)
    report_bad(splits, out, log)
    task = DetectionTask(cfg, splits, augment=augment, data=data, backbone=backbone)
    summary = fit(task, rec, opts, log=log)
    if (out / "metrics.jsonl").is_file():
        summary["curves"] = str(plot_curves(out))
    return summary


def plot_curves(run: str | os.PathLike) -> Path:
    """``curves.png`` of a run: training loss and validation AP / AP50 per epoch."""
    run = Path(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows]
    with matplotlib_backend("Agg") as plt:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        a.plot(epochs, [r["train_loss"] for r in rows], marker=".")
        a.set(title="training loss", xlabel="epoch")
        for key in ("val_AP", "val_AP50", "val_AP75"):
            if any(key in r for r in rows):
                b.plot(epochs, [r.get(key, float("nan")) for r in rows], marker=".", label=key[4:])
        b.set(title="validation (COCO)", xlabel="epoch", ylim=(0, 1))
        b.legend()
        for ax in (a, b):
            ax.grid(alpha=0.3)
        minutes = rows[-1]["time_s"] / 60 if rows else 0
        fig.suptitle(f"{run.name}: {len(rows)} epochs, {minutes:.1f} min")
        fig.tight_layout()
        fig.savefig(run / "curves.png", dpi=110)
        plt.close(fig)
    return run / "curves.png"


def load_detector(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The detector a run folder, ``.safetensors`` or ``.pt`` file of a detection run holds, in
    eval mode, and the run's metadata (classes, category ids, data, ...)."""
    from mobilenets.weights.checkpoint import load_state, read_safetensors, resolve_checkpoint

    file = resolve_checkpoint(path)
    if file.suffix == ".safetensors":
        state, header = read_safetensors(file)
        meta = json.loads(header.get("run", "{}"))
    elif file.suffix in (".pt", ".pth"):
        full = load_state(file)
        state = full["ema"] if full.get("ema") is not None else full.get("model")
        meta = json.loads(full.get("run", "{}"))
    else:
        raise MobileNetsError(f"unknown checkpoint format {file.suffix!r} for {file}")
    if meta.get("task") != "detection" or not isinstance(meta.get("model"), dict):
        raise MobileNetsError(f"{file} is not a detection checkpoint (no detection run metadata)")
    model = build_detector(DetectorConfig.from_dict(meta["model"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MobileNetsError(f"weights in {file} do not fit the detector its metadata describes: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.eval(), meta


@torch.no_grad()
def detect_split(model, task: DetectionTask, split: DetectionSplit, batch_size: int = 16, device: str = "auto",
                 progress: bool = False, workers: int = 0) -> list[dict[str, Any]]:
    """COCO results of ``model`` over every image of ``split`` (in original image coordinates)."""
    dev = resolve_device(device)
    ctx = StepContext(dev)
    model = model.to(dev).eval()
    dataset = task.eval_dataset(split)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=task.collate)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="detect", leave=False, dynamic_ncols=True)
    results: list[dict[str, Any]] = []
    for (images, _), targets, _bad in loader:
        if not images:
            continue
        for det, tgt in zip(model(ctx.prepare(images)), targets):
            det = {k: v.cpu() for k, v in det.items()}
            det["boxes"] = original_scale(det["boxes"], tgt)
            results += to_results(det, tgt["image_id"], task.category_ids)
    return results


def eval_checkpoint(checkpoint: str, data: str | None = None, *, split: str = "val", output: str | None = None,
                    batch_size: int = 16, device: str = "auto", backend: str = "auto", progress: bool = False,
                    log: Any = print) -> dict[str, Any]:
    """COCO's 12 numbers and per-class AP of a detection checkpoint on ``split`` of ``data``
    (default: the data it was trained on); writes ``detections.json`` (COCO results) and
    ``pr.png`` to ``output`` (default: the run folder)."""
    model, meta = load_detector(checkpoint)
    data = data if data is not None else meta.get("data")
    splits = load_data(data, progress=progress)
    if split not in splits:
        raise MobileNetsError(f"{data or 'the stand-in data'} has no {split!r} split")
    report_bad({split: splits[split]}, None, log)
    cfg = DetectorConfig.from_dict(meta["model"])
    task = DetectionTask(cfg, None, data=data, category_ids=meta["category_ids"], class_names=meta["classes"])
    if [c["id"] for c in sorted(splits[split].coco["categories"], key=lambda c: c["id"])] != task.category_ids:
        raise MobileNetsError(f"the categories of {data} differ from the ones the detector was trained on")
    results = detect_split(model, task, splits[split], batch_size, device, progress)
    ckpt = Path(checkpoint)
    out = Path(output) if output else (ckpt if ckpt.is_dir() else ckpt.parent)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detections.json").write_text(json.dumps(results))
    metrics = coco_metrics(splits[split].coco, results, backend)
    plot = plot_pr(metrics.pop("eval"), splits[split].coco, out / "pr.png", f"{ckpt.name} on {split}")
    return {"checkpoint": str(checkpoint), "data": data or "stand-in", "split": split, "images":
            len(splits[split].coco["images"]), "detections": len(results), "results": str(out / "detections.json"),
            "plot": str(plot), **metrics}


__all__ = ["BN_MOMENTUM", "STANDIN_DEFAULTS", "STANDIN_FASTER_RCNN", "STANDIN_FASTER_RCNN_RECIPE", "STANDIN_RECIPE", "detect_split", "eval_checkpoint", "load_data", "load_detector",
           "plot_curves", "train"]
