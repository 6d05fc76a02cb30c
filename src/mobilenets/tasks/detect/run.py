"""Training, evaluating and loading detectors: what ``mobilenet detect train|eval`` call.

:func:`train` resolves the data (a COCO or VOC folder, or the built-in stand-in), the detector
and the recipe into a :class:`~mobilenets.tasks.detect.task.DetectionTask` and runs it through
:func:`~mobilenets.train.loop.fit`; skipped annotations are printed in one line and listed in the
run folder's ``bad_annotations.txt``; the run ends with ``curves.png`` (loss and AP per epoch).
:func:`load_detector` reads a detection run or weights file back; :func:`eval_checkpoint` scores a
checkpoint on a split with COCO's numbers and writes the detections file and the PR plot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.tasks.detect.checkpoint import detector_init, load_detector
from mobilenets.tasks.detect.config import DetectorConfig, make_config
from mobilenets.tasks.detect.curves import plot_curves
from mobilenets.tasks.detect.data import NO_BOXES, DetectionSplit, load_splits, summary_line, usable_boxes
from mobilenets.tasks.detect.evaluate import coco_metrics, original_scale, plot_pr, to_results
from mobilenets.tasks.detect.task import DetectionTask, detect_recipe
from mobilenets.tasks.detect.transforms import DetectAugment
from mobilenets.train.loop import StepContext, fit
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe
from mobilenets.utils.device import resolve_device

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


def report_bad(splits: dict[str, DetectionSplit], log) -> None:
    """One line about what the data checks skipped (evaluation: nothing is written)."""
    line = summary_line(list(splits.values()))
    if line:
        log(line)


def require_boxes(split: DetectionSplit, use: str) -> None:
    """Refuse, with one line and before anything is written, a split with no usable box: what
    the checks left out says why."""
    if usable_boxes(split.coco):
        return
    # what was left out, without the categories it left empty (all of them are)
    left_out = [(what, why) for what, why in split.bad if why != NO_BOXES]
    skipped = summary_line([DetectionSplit(split.name, split.images, split.coco, split.source, left_out)], named=False) \
        if left_out else None
    crowd = len(split.coco["annotations"])  # all of them crowd (COCO iscrowd, VOC difficult): not trained on
    why = f"; {skipped}" if skipped else ""
    why += f"; {crowd} crowd/difficult region(s) only, which are not boxes to learn" if crowd else ""
    raise MobileNetsError(f"no usable box to {use} in {split.source}: {len(split.coco['images'])} usable image(s)"
                          + (why or ", no annotations"))


def train(data: str | None = None, detector: str | None = None, *, alpha: float | None = None,
          resolution: int | None = None, variant: str | None = None, model: str | None = None,
          init: str | None = None, backbone: str | None = None,
          recipe: str | Recipe = "modern", recipe_overrides: dict[str, Any] | None = None,
          detector_overrides: dict[str, Any] | None = None, zoom_out: bool | None = None,
          bn_momentum: float | None = None, options: TrainOptions | None = None, log: Any = print) -> dict[str, Any]:
    """Train a detector on ``data`` (a COCO or VOC folder; None: the built-in stand-in) and return
    the loop's summary. ``model``: a registry name whose width/variant (and resolution) the
    backbone takes. ``init`` (``backbone`` is its older name): a classification checkpoint (run
    folder, model folder, weights file) whose MobileNet the detector starts from (its
    alpha/padding/activation win), or a detector (a detection run, or a folder from ``detect
    convert``) fine-tuned whole: its architecture and every tensor that fits (the class head only
    when the classes are the same), at ``resolution`` if given. ``bn_momentum``: BatchNorm momentum in training (default
    :data:`BN_MOMENTUM`). Run folder, resume and the recorded request as for every training
    command (:func:`mobilenets.train.runner.open_run`); skipped annotations are listed in the run
    folder's ``bad_annotations.txt``, and ``curves.png`` ends the run."""
    from mobilenets.train.runner import is_main, open_run, record_path, request_of, task_recipe

    if init is not None and backbone is not None and init != backbone:
        raise MobileNetsError("give the starting weights once: init (backbone is its older name)")
    init = init if init is not None else backbone
    request = request_of(data=record_path(data), detector=detector, model=model, alpha=alpha, resolution=resolution,
                         variant=variant, init=record_path(init), recipe=recipe,
                         overrides={**(recipe_overrides or {}), **(detector_overrides or {})}, zoom_out=zoom_out,
                         bn_momentum=bn_momentum)
    opts, saved = open_run(options, DetectionTask.name, request, log)
    start = start_detector = None
    if saved is not None:
        cfg, rec = DetectorConfig.from_dict(saved["model"]), Recipe.from_dict(saved["recipe"])
        data, augment, init = saved.get("data"), DetectAugment.from_dict(saved["augment"]), None
        request = saved.get("request") or {}
        splits = load_data(data)
    else:
        standin = data is None
        defaults = STANDIN_DEFAULTS if standin else {"detector": "ssd", "alpha": 1.0, "resolution": None}
        if model is not None:
            from mobilenets.models.registry import resolve_config

            named = resolve_config(model, alpha=alpha, resolution=resolution, variant=variant)
            alpha, variant, resolution = named.alpha, named.variant, resolution or named.resolution
        overrides = dict(recipe_overrides or {})
        base = detect_recipe(recipe)
        kind = detector or defaults["detector"]
        if standin:
            preset = {**STANDIN_RECIPE, **(STANDIN_FASTER_RCNN_RECIPE if kind == "faster_rcnn" else {})}
            base = base.replace(**{k: v for k, v in preset.items() if k not in overrides})
        rec = task_recipe(base.replace(**overrides) if overrides else base, DetectionTask.recipe_fields)
        augment = DetectAugment.from_recipe(rec, zoom_out if zoom_out is not None or not standin
                                            else STANDIN_DEFAULTS["zoom_out"])
        if init:
            from mobilenets.weights.checkpoint import load_model

            # before the data: a bad file is refused at once. A detector (a run, or a folder from
            # `detect convert`) is fine-tuned whole; a classifier gives the backbone.
            start_detector = detector_init(init)
            start = None if start_detector is not None else load_model(init)
        data = record_path(data)
        splits = load_data(data, progress=opts.progress)
        if "train" not in splits:
            raise MobileNetsError(f"no training split in {data}: expected annotations/instances_train*.json (COCO) "
                                  f"or ImageSets/Main/train.txt or trainval.txt (VOC)")
        require_boxes(splits["train"], "train on")
        if "val" in splits and not usable_boxes(splits["val"].coco):
            log(f"no usable box to validate on in {splits['val'].source}: training without validation")
            splits = {"train": splits["train"]}
        from mobilenets.models.config import MobileNetConfig

        if start_detector is not None:
            theirs = DetectorConfig.from_dict(start_detector[1]["model"])
            if detector is not None and detector != theirs.detector:
                raise MobileNetsError(f"--init is a {theirs.detector} detector; --detector {detector} contradicts it")
            kind = theirs.detector
            base_cfg = theirs.backbone
        elif start is not None:
            from mobilenets.train.init import init_config

            # the weights fix the backbone's architecture: a contradicting --alpha/--variant is refused
            base_cfg = init_config(start.config, init, None, None, {"alpha": alpha, "variant": variant})
        else:
            base_cfg = MobileNetConfig(alpha=alpha if alpha is not None else defaults["alpha"],
                                       **({"variant": variant} if variant else {}))
        base_cfg = base_cfg.replace(bn_momentum=BN_MOMENTUM if bn_momentum is None else bn_momentum)
        fields = {**(STANDIN_FASTER_RCNN if standin and kind == "faster_rcnn" else {}), **(detector_overrides or {})}
        if start_detector is not None:
            # its architecture and post-processing, this data's classes; the input handling becomes the
            # training pipeline's (antialiased resize, no padding), which is what it is fine-tuned on
            theirs = DetectorConfig.from_dict(start_detector[1]["model"])
            size = resolution or theirs.resolution
            cfg = theirs.replace(backbone=base_cfg.replace(resolution=size), resolution=size,
                                 num_classes=len(splits["train"].category_ids), input_resize="antialias",
                                 input_pad="none", pad_rounded_scale=False, **fields)
        else:
            cfg = make_config(kind, backbone=base_cfg, resolution=resolution or defaults["resolution"],
                              num_classes=len(splits["train"].category_ids), **fields)
        init = record_path(init)
    task = DetectionTask(cfg, splits, augment=augment, data=data, backbone=init if saved is None else
                         saved.get("backbone_init"), backbone_model=start if start is not None else start_detector,
                         log=log if is_main() else None)
    return fit(task, rec, opts, extra_meta={"request": request}, log=log)


def detect_split(model, task: DetectionTask, split: DetectionSplit, batch_size: int = 16, device: str = "auto",
                 progress: bool = False, workers: int = 0, *, amp: bool = False,
                 channels_last: bool = False) -> list[dict[str, Any]]:
    """COCO results of ``model`` over every image of ``split`` (in original image coordinates),
    run by the one inference loop (:func:`~mobilenets.infer.loop.run_batches`) on ``device``, with
    bf16 autocast (``amp``) and ``channels_last`` as asked."""
    from mobilenets.infer.context import prepare_model
    from mobilenets.infer.loop import run_batches

    ctx = StepContext(resolve_device(device), amp=amp, channels_last=channels_last)
    model = prepare_model(model, ctx)
    loader = DataLoader(task.eval_dataset(split), batch_size=batch_size, num_workers=workers, collate_fn=task.collate,
                        pin_memory=ctx.device.type == "cuda")
    results: list[dict[str, Any]] = []

    def collect(detections, targets) -> None:
        for det, tgt in zip(detections, targets):
            det = {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in det.items()}
            det["boxes"] = original_scale(det["boxes"], tgt)
            results.extend(to_results(det, tgt["image_id"], task.category_ids))

    run_batches(model, loader, collect, ctx, task=task, progress=progress, desc="detect")
    return results


def match_categories(classes: list[str], split: DetectionSplit, data: str, log: Any = print) -> tuple[list[int], dict]:
    """The data set's category id of each of the run's ``classes`` (by name; a negative placeholder
    for a class the data set lacks) and the split's ground truth cut to the categories both know.
    A category the run does not know is reported (its boxes are not scored); none in common is
    refused."""
    ids = {c["name"]: c["id"] for c in split.coco["categories"]}
    common = [n for n in classes if n in ids]
    if not common:
        raise MobileNetsError(f"none of the run's classes ({', '.join(classes)}) is a category of {data} "
                              f"({', '.join(ids) or 'no categories'}): nothing to score")
    unknown = [n for n in ids if n not in classes]
    absent = [n for n in classes if n not in ids]
    if unknown:
        log(f"not scored: {len(unknown)} categor{'y' if len(unknown) == 1 else 'ies'} of {data} the run does not "
            f"know: {', '.join(unknown)}")
    if absent:
        log(f"{len(absent)} of the run's classes are not categories of {data}: {', '.join(absent)} (their "
            f"detections are left out)")
    keep = {ids[n] for n in common}
    gt = {**split.coco, "categories": [c for c in split.coco["categories"] if c["id"] in keep],
          "annotations": [a for a in split.coco["annotations"] if a["category_id"] in keep]}
    return [ids.get(n, -1 - i) for i, n in enumerate(classes)], gt


def eval_output(checkpoint: str | os.PathLike, data: str | None, split: str, output: str | None) -> Path:
    """Where ``detect eval`` writes: ``output``, else ``RUN/eval-<data name>-<split>``; never the
    run folder itself (its files are the run's), never an existing file."""
    ckpt = Path(checkpoint)
    run = ckpt if ckpt.is_dir() else ckpt.parent
    default = run / f"eval-{Path(data).name if data else 'standin'}-{split}"
    out = Path(output) if output else default
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"--output {out} is a file; give a folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise MobileNetsError(f"cannot write to {out}: {blocker} is a file, not a folder")
    if out.resolve() == run.resolve() and (run / "config.json").is_file():
        raise MobileNetsError(f"--output {out} is the run folder; eval writes into a folder of its own "
                              f"(default {default})")
    return out


def eval_checkpoint(checkpoint: str, data: str | None = None, *, split: str = "val", output: str | None = None,
                    batch_size: int = 16, device: str = "auto", backend: str = "auto", progress: bool = False,
                    log: Any = print, workers: int = 0, amp: bool = False, channels_last: bool = False) -> dict[str, Any]:
    """COCO's 12 numbers and per-class AP of a detection checkpoint on ``split`` of ``data``
    (default: the data it was trained on), categories matched by name (:func:`match_categories`);
    writes ``detections.json`` (COCO results, in the data set's category ids) and ``pr.png`` to
    ``output`` (default: ``RUN/eval-<data name>-<split>``: never over the run's own files).
    Everything is checked before anything is run or written. ``device``, ``amp``,
    ``channels_last``, ``workers``: how the images are run (:func:`detect_split`)."""
    model, meta = load_detector(checkpoint)
    recorded = DetectorConfig.from_dict(meta["model"])
    if (recorded.input_resize, recorded.input_pad) != ("antialias", "none"):
        # the evaluation pipeline resizes as training does (antialiased, stretched); scoring a detector
        # converted with TF's resize or face-api's padding that way would give numbers for other inputs
        raise MobileNetsError(f"detect eval does not apply this detector's recorded input handling yet "
                              f"(input_resize {recorded.input_resize}, input_pad {recorded.input_pad}); "
                              "detect predict and export do")
    if data is None and meta.get("data") is not None and not Path(meta["data"]).is_dir():
        raise DataNotFoundError(f"the data the run was trained on, {meta['data']}, is not found: give --data")
    data = data if data is not None else meta.get("data")
    splits = load_data(data, progress=progress)
    if split not in splits:
        raise MobileNetsError(f"{data or 'the stand-in data'} has no {split} split (--split)")
    out = eval_output(checkpoint, data, split, output)
    report_bad({split: splits[split]}, log)
    require_boxes(splits[split], "score against")
    ids, gt = match_categories(list(meta["classes"]), splits[split], data or "the stand-in data", log)
    scored = DetectionSplit(split, splits[split].images, gt, splits[split].source)
    require_boxes(scored, "score against")
    cfg = DetectorConfig.from_dict(meta["model"])
    task = DetectionTask(cfg, None, data=data, category_ids=ids, class_names=meta["classes"])
    results = [r for r in detect_split(model, task, scored, batch_size, device, progress, workers, amp=amp,
                                       channels_last=channels_last) if r["category_id"] >= 0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "detections.json").write_text(json.dumps(results))
    metrics = coco_metrics(gt, results, backend)
    plot = plot_pr(metrics.pop("eval"), gt, out / "pr.png", f"{Path(checkpoint).name} on {split}")
    return {"checkpoint": str(checkpoint), "data": data or "stand-in", "split": split, "images":
            len(gt["images"]), "detections": len(results), "results": str(out / "detections.json"),
            "plot": str(plot), **metrics}


__all__ = ["BN_MOMENTUM", "STANDIN_DEFAULTS", "STANDIN_FASTER_RCNN", "STANDIN_FASTER_RCNN_RECIPE", "STANDIN_RECIPE", "detect_split", "eval_checkpoint", "eval_output", "load_data", "load_detector", "match_categories",
           "require_boxes",
           "plot_curves", "train"]
