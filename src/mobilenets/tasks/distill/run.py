"""``mobilenet distill`` as functions: :func:`distill` trains a student through the generic loop;
:func:`load_student`, :func:`outputs_of` and the ``*_report`` functions judge it beside its teacher
(verification for embeddings, per-attribute AP for attributes, top-1 agreement for classes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.data.augment import Augment
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError, arg
from mobilenets.models.config import MobileNetConfig
from mobilenets.tasks.distill.data import load_crops
from mobilenets.tasks.distill.metrics import (
    Pairs,
    format_average_precision,
    format_verification,
    mean_average_precision,
    pair_distances,
    plot_roc,
    verification_report,
)
from mobilenets.tasks.distill.student import load_student, save_student, student_preprocessing
from mobilenets.tasks.distill.task import DistillSettings, DistillTask, teacher_targets
from mobilenets.tasks.distill.teachers import Teacher, load_teacher, normalize_crops
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe, get_recipe

# A small student by default: the paper's face experiments use alpha 0.25-1.0 at 128-160 px.
DEFAULT_STUDENT = MobileNetConfig(alpha=0.25, resolution=128)


def augment_of(recipe: Recipe) -> Augment:
    """The crop augmentation a recipe asks for (student mean/std: the TF MobileNets' [-1, 1]);
    RandAugment and label smoothing are not distillation's (:attr:`DistillTask.recipe_fields`)."""
    return Augment(crop_min_area=recipe.crop_min_area, hflip=recipe.hflip, color_jitter=recipe.color_jitter)


def distill(teacher: str | Teacher | None, data: str | None, task: str = "classify",
            model: str | MobileNetConfig | None = None, *,
            alpha: float | None = None, resolution: int | None = None, variant: str | None = None,
            val_data: str | None = None, val_every: int = 10, temperature: float | None = None, normalize: bool = False,
            embedding_dim: int | None = None, label_weight: float = 0.0, init: str | os.PathLike | None = None,
            recipe: str | Recipe = "distill",
            recipe_overrides: dict[str, Any] | None = None, options: TrainOptions | None = None,
            log: Any = print) -> dict[str, Any]:
    """Train a MobileNet student to mimic ``teacher`` (a :class:`Teacher` or a spec string, see
    :func:`~mobilenets.tasks.distill.teachers.load_teacher`) on the images of ``data`` (any folder,
    no labels; with ``label_weight`` > 0 a classify run also learns the class folders' labels),
    through :func:`mobilenets.train.loop.fit`; returns fit's summary. ``init`` (a checkpoint or
    model folder, typically the teacher's own when it is a MobileNet) starts the student from those
    weights, narrowed to the student's alpha by :func:`mobilenets.weights.narrow.narrow`, with
    their padding and activation; default: random. The run folder, resume and the recorded
    request are as for every training command (:func:`mobilenets.train.runner.open_run`); the
    finished run also holds the student as a model folder (``RUN/student``)."""
    from mobilenets.models.registry import resolve_config
    from mobilenets.train.loop import fit
    from mobilenets.train.runner import is_main, open_run, record_path, request_of, task_recipe

    spec = teacher.spec if isinstance(teacher, Teacher) else record_path(teacher)
    request = request_of(teacher=spec, data=record_path(data), task=task, model=model, alpha=alpha,
                         resolution=resolution, variant=variant, val_data=record_path(val_data),
                         val_every=val_every, temperature=temperature, normalize=normalize,
                         embedding_dim=embedding_dim, label_weight=label_weight, init=record_path(init),
                         recipe=recipe, overrides=recipe_overrides)
    opts, saved = open_run(options, DistillTask.name, request, log)
    start = None
    if saved is not None:
        teacher = saved["teacher"]["spec"]
        data, val_data = saved["data"], saved["val_data"]
        settings = DistillSettings(**saved["distill"])
        rec = Recipe.from_dict(saved["recipe"])
        cfg = MobileNetConfig.from_dict(saved["model"])
        augment = Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["augment"].items()})
        request, init_spec = saved.get("request") or {}, saved.get("init")
    else:
        if teacher is None or data is None:
            raise MobileNetsError(f"distill needs {arg('teacher')} and {arg('data')}")
        if val_data is not None and val_every != 10:
            raise MobileNetsError(f"{arg('val_every')} holds out part of {arg('data')} when no {arg('val_data')} is "
                                  f"given; give one or the other")
        rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
        if recipe_overrides:
            rec = rec.replace(**recipe_overrides)
        rec = task_recipe(rec, DistillTask.recipe_fields)
        if temperature is not None and task != "classify":
            raise MobileNetsError(f"{arg('temperature')} is for {arg('task', 'classify')} (Hinton's KD), not "
                                  f"{arg('task', task)}")
        settings = DistillSettings(mode=task, temperature=4.0 if temperature is None else float(temperature),
                                   normalize=bool(normalize),
                                   embedding_dim=embedding_dim, val_every=int(val_every),
                                   label_weight=float(label_weight))
        cfg = resolve_config(model, alpha=alpha, resolution=resolution, variant=variant, default=DEFAULT_STUDENT)
        augment = augment_of(rec)
        data, val_data, init_spec = record_path(data), record_path(val_data), record_path(init)
        teacher = teacher if isinstance(teacher, Teacher) else spec  # a path as the run records it
        if init is not None:
            from mobilenets.weights.checkpoint import load_model
            from mobilenets.weights.narrow import check_narrowing, narrow_config

            start = load_model(init)
            cfg = narrow_config(start.config, cfg)
            check_narrowing(start.config, cfg)  # before any data is read
            if is_main():
                log(f"student starts from {os.fspath(init)} (alpha {start.config.alpha:g} narrowed to "
                    f"{cfg.alpha:g})")
    t = teacher if isinstance(teacher, Teacher) else load_teacher(teacher)
    dtask = DistillTask(t, cfg, data, settings, augment, val_data=val_data, init=start, init_spec=init_spec)
    if len(dtask.train_paths) < rec.batch_size:
        rec = rec.replace(batch_size=len(dtask.train_paths))
        if is_main():
            log(f"batch size lowered to {rec.batch_size}: the training set has {len(dtask.train_paths)} images")
    summary = fit(dtask, rec, opts, extra_meta={"request": request}, log=log)
    return {**summary, "teacher": t.describe(), "task": settings.mode, "train_images": len(dtask.train_paths),
            "val_images": len(dtask.val_paths)}


def outputs_of(net: Any, crops: torch.Tensor, pre: Preprocessing | None = None, batch_size: int = 64, *,
               device: str = "cpu", amp: bool = False, channels_last: bool = False) -> np.ndarray:
    """``[N, D]`` outputs of a student (``pre``: its preprocessing) or of a :class:`Teacher`
    on ``uint8`` crops, in batches, through the one inference loop
    (:func:`~mobilenets.infer.loop.predict_outputs`). A student runs on ``device`` with bf16
    autocast (``amp``) and ``channels_last`` as asked (and is left there); a teacher runs as it
    does in training, on the crops as they are."""
    from mobilenets.infer.context import StepContext, inference_context, prepare_model
    from mobilenets.infer.loop import predict_outputs

    if isinstance(net, Teacher):
        ctx = StepContext(torch.device("cpu"))  # a teacher's engine takes the crops on the CPU
        chunks = ((crops[i:i + batch_size], torch.arange(i, min(i + batch_size, len(crops))), [])
                  for i in range(0, len(crops), batch_size))
    else:
        ctx = inference_context(device, amp, channels_last)
        net = prepare_model(net, ctx)
        chunks = ((normalize_crops(crops[i:i + batch_size], pre), torch.arange(i, min(i + batch_size, len(crops))), [])
                  for i in range(0, len(crops), batch_size))
    out, _ = predict_outputs(net, chunks, ctx, desc="outputs")
    return out.numpy() if len(out) else np.zeros((0, 0), np.float32)


def verification_reports(student: torch.nn.Module, pre: Preprocessing, teacher: Teacher, pairs: Pairs,
                         crop_size: int, *, normalize: bool = False, teacher_threshold: float | None = None,
                         roc_png: str | Path | None = None, **run: Any) -> dict[str, Any]:
    """The verification report of the student beside the teacher's on ``pairs`` (with the ROC PNG),
    and the share of pairs on which the student's decision at its own best threshold equals the
    teacher's at ``teacher_threshold`` (default: the teacher's best threshold on these pairs).
    ``run``: how the student runs (``device``, ``amp``, ``channels_last``, ``batch_size`` of
    :func:`outputs_of`)."""
    files = sorted(set(pairs.a) | set(pairs.b))
    crops = load_crops("/", [os.path.abspath(f) for f in files], crop_size)
    index = {f: i for i, f in enumerate(files)}
    ia, ib = [index[f] for f in pairs.a], [index[f] for f in pairs.b]
    embs = {"teacher": outputs_of(teacher, crops), "student": outputs_of(student, crops, pre, **run)}
    if normalize:
        embs = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in embs.items()}
    dists = {k: pair_distances(v[ia], v[ib]) for k, v in embs.items()}
    reports = {k: verification_report(None, None, pairs.same, distances=d, fold_ids=pairs.fold)
               for k, d in dists.items()}
    t_thr = teacher_threshold if teacher_threshold is not None else reports["teacher"].threshold
    teacher_same = dists["teacher"] <= t_thr
    s_thr = reports["student"].threshold
    result = {"reports": {k: r.to_dict() for k, r in reports.items()}, "table": format_verification(reports),
              "teacher_threshold": t_thr, "student_threshold": s_thr,
              "agreement": float(np.mean((dists["student"] <= s_thr) == teacher_same)),
              "teacher_accuracy_at_threshold": float(np.mean(teacher_same == pairs.same))}
    if roc_png is not None:
        result["roc_png"] = str(plot_roc(reports, roc_png))
    return result


def attribute_report(student: torch.nn.Module, pre: Preprocessing, teacher: Teacher, crops: torch.Tensor,
                     names: Sequence[str] | None = None, **run: Any) -> dict[str, Any]:
    """Mean AP of the student's sigmoid outputs against the teacher's thresholded (>= 0.5)
    probabilities, per attribute, with the teacher's own positives counted. ``run``: how the
    student runs (keywords of :func:`outputs_of`)."""
    t = teacher_targets(torch.from_numpy(outputs_of(teacher, crops)), teacher.kind, "multilabel", teacher.spec).numpy()
    s = outputs_of(student, crops, pre, **run)
    names = list(names or teacher.names or [str(i) for i in range(t.shape[1])])
    result = mean_average_precision((t >= 0.5).astype(int), s, names)
    result["positives"] = dict(zip(names, (t >= 0.5).sum(0).astype(int).tolist()))
    result["table"] = format_average_precision(result)
    return result


def top1_agreement(student: torch.nn.Module, pre: Preprocessing, teacher: Teacher, crops: torch.Tensor,
                   **run: Any) -> dict[str, Any]:
    """How often the student's top-1 class is the teacher's, and the chance level (the share of
    the teacher's most frequent class). ``run``: how the student runs (keywords of :func:`outputs_of`)."""
    t = outputs_of(teacher, crops).argmax(1)
    s = outputs_of(student, crops, pre, **run).argmax(1)
    counts = np.bincount(t)
    return {"images": int(len(t)), "top1_agreement": float(np.mean(t == s)),
            "majority_class_share": float(counts.max() / len(t)), "teacher_classes_seen": int((counts > 0).sum())}


__all__ = ["DEFAULT_STUDENT", "attribute_report", "augment_of", "distill", "load_student", "outputs_of",
           "save_student", "student_preprocessing", "top1_agreement", "verification_reports"]
