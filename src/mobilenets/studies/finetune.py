"""``finetune``: transfer a pretrained MobileNet to a new classification set (paper Section 4.2,
Stanford Dogs, Table 10).

It is ``train(init=...)`` (:func:`mobilenets.train.classify.train`, so the one loop, resume and
run folders) with the transfer recipe (:data:`TRANSFER`: SGD, a short cosine schedule, the new
head at ``lr`` and the pretrained body at ``body_lr_scale x lr``) and :class:`FinetuneTask`,
which can freeze the body or its BatchNorm statistics. Data is an ImageNet-style folder or
Stanford Dogs' own layout (``Images/<breed>/*.jpg``, ``lists/train_list.mat`` and
``lists/test_list.mat``, read with ``scipy.io.loadmat``, labels 1-120), which is turned into an
ImageNet-style view of symbolic links inside the run folder. After training, the best weights
are evaluated once more for the confusion matrix (``confusion.png``, ``confusion.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from mobilenets.errors import DataNotFoundError, MobileNetsError, arg
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import PRESETS, Recipe
from mobilenets.train.state import latest_state
from mobilenets.train.tasks import ClassificationTask

# The transfer recipe (SGD, a short cosine schedule): a training preset, `--recipe transfer`.
TRANSFER = PRESETS["transfer"]

# Paper Table 10 (MobileNet for Stanford Dogs): top-1 %, million mult-adds, million parameters.
TABLE10 = {
    "Inception V3": (84.0, 5000, 23.2),
    "1.0 MobileNet-224": (83.3, 569, 3.3),
    "0.75 MobileNet-224": (81.9, 325, 1.9),
    "1.0 MobileNet-192": (81.9, 418, 3.3),
    "0.75 MobileNet-192": (80.5, 239, 1.9),
}


class FinetuneTask(ClassificationTask):
    """Classification whose body (everything but ``classifier.*``) may be frozen, keep its
    BatchNorm statistics, or learn at ``body_lr_scale`` of the head's learning rate."""

    name = "finetune"

    def __init__(self, *args: Any, freeze_body: bool = False, freeze_bn: bool = False, body_lr_scale: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_body, self.freeze_bn, self.body_lr_scale = bool(freeze_body), bool(freeze_bn), float(body_lr_scale)

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.freeze_body:
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("classifier."))
        return model

    def train_mode(self, model: nn.Module) -> None:
        model.train()
        if self.freeze_bn:
            # BatchNorm layers stay in eval mode: they normalise with, and never update, the
            # pretrained statistics (torch's _BatchNorm is the base of every BatchNorm flavour)
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def lr_scale(self, name: str) -> float:
        return 1.0 if name.startswith("classifier.") else self.body_lr_scale

    def run_meta(self) -> dict[str, Any]:
        return {**super().run_meta(), "transfer": {"freeze_body": self.freeze_body, "freeze_bn": self.freeze_bn,
                                                   "body_lr_scale": self.body_lr_scale}}


def is_stanford_dogs(data: str | os.PathLike) -> bool:
    root = Path(data)
    return (root / "Images").is_dir() and (root / "lists" / "train_list.mat").is_file()


def _read_list(path: Path) -> list[tuple[str, int]]:
    import numpy as np
    import scipy.io

    if not path.is_file():
        raise DataNotFoundError(f"Stanford Dogs list not found: {path}")
    try:
        mat = scipy.io.loadmat(path)
        files = [str(np.asarray(f).ravel()[0]) for f in np.asarray(mat["file_list"]).ravel()]
        labels = [int(v) for v in np.asarray(mat["labels"]).ravel()]
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file raises anything from zlib to struct
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise MobileNetsError(f"{path} is not a readable Stanford Dogs list (a MATLAB file with file_list and "
                              f"labels): {why.splitlines()[0][:200]}") from None
    if not files:
        raise MobileNetsError(f"{path} lists no images")
    if len(files) != len(labels):
        raise MobileNetsError(f"{path}: {len(files)} files but {len(labels)} labels")
    return list(zip(files, labels))


def stanford_dogs_folders(data: str | os.PathLike, view: str | os.PathLike) -> dict[str, Any]:
    """An ImageNet-style view (``view/train/<breed>/``, ``view/val/<breed>/``, symbolic links)
    of Stanford Dogs' layout; the test list is the validation split. Labels must be 1..N, one
    breed folder each (the first path part), so that sorted folders keep the label order."""
    root, out = Path(data).resolve(), Path(view)
    splits = {"train": _read_list(root / "lists" / "train_list.mat"),
              "val": _read_list(root / "lists" / "test_list.mat")}
    folder_of: dict[int, str] = {}
    for items in splits.values():
        for rel, label in items:
            breed = Path(rel).parts[0]
            if folder_of.setdefault(label, breed) != breed:
                raise MobileNetsError(f"label {label} names two breed folders: {folder_of[label]} and {breed}")
    labels = sorted(folder_of)
    if labels != list(range(1, len(labels) + 1)):
        raise MobileNetsError(f"Stanford Dogs labels must run 1..N; got {labels[:3]}...{labels[-3:]}")
    # class index = label - 1 only if sorting the folder names keeps the label order
    names = [folder_of[v] for v in labels]
    prefix = names != sorted(names)
    # every check before the first link is written: nothing is left behind by a refused layout
    present = {split: [(rel, label) for rel, label in items if (root / "Images" / rel).is_file()]
               for split, items in splits.items()}
    missing = sum(len(v) for v in splits.values()) - sum(len(v) for v in present.values())
    if not any(present.values()):
        raise DataNotFoundError(f"none of the listed images is under {root / 'Images'}")
    have = {label for _, label in present["train"]}
    empty = [folder_of[v] for v in labels if v not in have]
    if empty:
        raise MobileNetsError(f"{len(empty)} of {len(labels)} classes have no training image under "
                              f"{root / 'Images'} (first: {empty[0]}): every class needs one")
    if not present["val"]:
        raise MobileNetsError(f"none of the images of {root / 'lists' / 'test_list.mat'} is under {root / 'Images'}")
    for split, items in present.items():
        for rel, label in items:
            cls = f"{label:03d}-{folder_of[label]}" if prefix else folder_of[label]
            link = out / split / cls / Path(rel).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(root / "Images" / rel)
    return {"classes": len(labels), "train": len(splits["train"]), "val": len(splits["val"]), "missing": missing}


def photo_dogs_layout(output: str | os.PathLike, photos: list[str], train: int = 30, test: int = 15, *,
                      size: int = 256, seed: int = 0) -> Path:
    """A small folder in Stanford Dogs' layout built from real photos (:mod:`mobilenets.data.photos`):
    one "breed" per photo (``Images/NN-<photo>/``, random crops of it), ``lists/train_list.mat``
    and ``lists/test_list.mat`` written with ``scipy.io.savemat`` as the real lists are (cell
    arrays ``file_list`` and ``annotation_list``, ``labels`` 1..N)."""
    import numpy as np
    import scipy.io

    from mobilenets.data.photos import write_crops

    root = Path(output)
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, photo in enumerate(photos, start=1):
        breed = f"{label:02d}-{photo}"
        paths = write_crops(root / "Images" / breed, train + test, photos=[photo], seed=seed + label, size=size)
        for i, path in enumerate(paths):
            lists["train" if i < train else "test"].append((f"{breed}/{path.name}", label))
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for split, items in lists.items():
        files = np.empty((len(items), 1), dtype=object)
        notes = np.empty((len(items), 1), dtype=object)
        for i, (rel, _label) in enumerate(items):
            files[i, 0], notes[i, 0] = rel, rel.rsplit(".", 1)[0]
        scipy.io.savemat(root / "lists" / f"{split}_list.mat",
                         {"file_list": files, "annotation_list": notes,
                          "labels": np.array([[label] for _rel, label in items], dtype=np.uint8)})
    return root


def confusion(run: str | os.PathLike, data: str | os.PathLike, batch_size: int = 64, *, device: str = "cpu",
              amp: bool = False, channels_last: bool = False, workers: int = 0,
              progress: bool = False) -> dict[str, Any]:
    """The confusion matrix (rows: true class, columns: predicted) of the run's best weights on
    ``data``'s val split, evaluated with the preprocessing the run records; also as a PNG. The
    images run through the one inference loop (:func:`~mobilenets.infer.loop.run_batches`) on
    ``device``, with bf16 autocast (``amp``) and ``channels_last`` as asked."""
    import torch
    from torch.utils.data import DataLoader

    from mobilenets.data.datasets import Augment, collate_skip_bad, load_data
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.infer.context import inference_context, prepare_model
    from mobilenets.infer.loop import run_batches
    from mobilenets.weights.checkpoint import load_checkpoint

    ctx = inference_context(device, amp, channels_last)
    model, meta = load_checkpoint(run)
    pre = Preprocessing.from_dict(meta.get("preprocessing") or meta, resolution=model.config.resolution)
    aug = Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)
    bundle = load_data(data, model.config.resolution, aug)
    n = len(bundle.classes)
    matrix = torch.zeros(n, n, dtype=torch.long)

    def count(logits: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.cpu()
        matrix.index_put_((labels, logits.argmax(1).cpu()), torch.ones_like(labels), accumulate=True)

    loader = DataLoader(bundle.val, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad)
    run_batches(prepare_model(model, ctx), loader, count, ctx, progress=progress, desc="confusion")
    top1 = float(matrix.diag().sum()) / max(int(matrix.sum()), 1)
    result = {"classes": bundle.classes, "matrix": matrix.tolist(), "top1": top1}
    (Path(run) / "confusion.json").write_text(json.dumps(result))
    result["png"] = str(_plot_confusion(matrix.numpy(), bundle.classes, top1, Path(run) / "confusion.png"))
    return result


def _plot_confusion(matrix, classes: list[str], top1: float, path: Path) -> Path:
    from mobilenets.utils.scoped import matplotlib_backend

    with matplotlib_backend("Agg") as plt:
        size = min(4 + 0.35 * len(classes), 30)
        fig, ax = plt.subplots(figsize=(size, size * 0.9))
        rows = matrix.sum(1, keepdims=True).clip(min=1)
        im = ax.imshow(matrix / rows, cmap="Blues", vmin=0, vmax=1)
        if len(classes) <= 40:  # beyond that, labels and counts are unreadable
            ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
            for i in range(len(classes)):
                for j in range(len(classes)):
                    if matrix[i, j]:
                        ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                                color="white" if matrix[i, j] / rows[i, 0] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix (row-normalised), top-1 {100 * top1:.2f}%")
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def finetune(data: str | os.PathLike | None, init: str | os.PathLike | None = None, *, model: str | None = None,
             alpha: float | None = None, resolution: int | None = None, variant: str | None = None,
             recipe: str | Recipe = "transfer", recipe_overrides: dict[str, Any] | None = None,
             body_lr_scale: float = 0.1, freeze_body: bool = False, freeze_bn: bool = False,
             options: TrainOptions | None = None, log: Any = print) -> dict[str, Any]:
    """Fine-tune ``init`` (None: ``model`` from scratch, the same recipe) on ``data``; returns the
    training summary with the confusion matrix's PNG and top-1 and the Table 10 rows. ``recipe``:
    :data:`TRANSFER` ("transfer") or any training preset, with ``recipe_overrides``; ``options``:
    how the run runs (folder, resume, device, threads, ...), as for every training command."""
    from mobilenets.train.classify import train
    from mobilenets.train.runner import check_folder, is_main

    if not (isinstance(body_lr_scale, (int, float)) and 0 <= body_lr_scale <= 1):
        raise MobileNetsError(f"{arg('body_lr_scale')} must be in [0, 1], got {body_lr_scale!r}")
    opts = options or TrainOptions()
    if data is None and not opts.resume:
        raise MobileNetsError(f"finetune needs {arg('data')} (or {arg('resume')} with the run's {arg('output')})")
    if data is not None and not Path(data).is_dir():
        raise DataNotFoundError(f"data folder not found: {data}")
    if opts.output is None:
        from mobilenets.train.state import new_run_dir

        opts = dataclasses.replace(opts, output=str(new_run_dir()))
    out = Path(opts.output)
    check_folder(out, opts.resume)  # before the Stanford Dogs view is written into it
    created = not out.exists()
    try:
        folders = data
        if data is not None and is_stanford_dogs(data):
            folders = out / "data"  # the view lives with the run, which records it as its data
            if not opts.resume:
                info = stanford_dogs_folders(data, folders)
                if is_main():
                    log(f"Stanford Dogs layout: {info['classes']} classes, {info['train']} train / {info['val']} "
                        f"test images" + (f" ({info['missing']} listed but missing)" if info["missing"] else ""))
        task_options = {"freeze_body": freeze_body, "freeze_bn": freeze_bn, "body_lr_scale": float(body_lr_scale)}
        if init is None and model is None and not opts.resume:
            model = "mobilenet_v1_1.0_224"
        summary = train(None if folders is None else str(folders), model, alpha=alpha, resolution=resolution,
                        variant=variant, recipe=recipe, recipe_overrides=recipe_overrides, options=opts, init=init,
                        task_class=FinetuneTask, task_options=task_options, log=log)
    except BaseException as exc:
        # a run refused (or stopped) before its config.json leaves nothing; one with a config.json
        # but no checkpoint is kept only when interrupted (the interrupt line says how to restart it)
        started = (out / "config.json").is_file() and isinstance(exc, KeyboardInterrupt)
        if created and is_main() and latest_state(out) is None and not started:
            shutil.rmtree(out, ignore_errors=True)
        raise
    from mobilenets.cost.count import analytical_cost
    from mobilenets.models.config import MobileNetConfig

    cost = analytical_cost(MobileNetConfig.from_dict(summary["model"]))
    result = {**summary, "init": None if init is None else str(init), "mult_adds": cost.mult_adds,
              "params": cost.params}
    run = Path(summary["output"])
    saved = json.loads((run / "config.json").read_text())
    result.update({"confusion_png": None, "best_top1_confusion": None, "classes": len(saved.get("classes") or [])})
    from mobilenets.weights.checkpoint import run_weights

    if is_main() and run_weights(run) is not None:  # a run stopped inside its first epoch has none yet
        conf = confusion(run, saved["data"])
        result.update({"confusion_png": conf["png"], "best_top1_confusion": conf["top1"],
                       "classes": len(conf["classes"])})
    return result


def finetune_text(result: dict[str, Any]) -> str:
    from mobilenets.models.registry import paper_name

    cfg = result["model"]
    name = paper_name(cfg["alpha"], cfg["resolution"])
    start = f"from {result['init']}" if result["init"] else "from scratch"
    val = "no epoch finished" if result["val_top1"] is None else f"val top-1 {100 * result['val_top1']:.2f}%"
    lines = [f"fine-tuned {start} in {result['seconds']:.0f} s ({result['epochs']} epochs, {result['steps']} steps): "
             f"{val} (best {100 * result['best_top1']:.2f}%)",
             f"confusion matrix of the best weights: {result['confusion_png'] or 'none (no epoch finished)'}",
             "Table 10 layout (the paper's rows: Stanford Dogs, 120 classes; ours: this data):",
             f"  {'Model':<34} {'Top-1 Accuracy':>14} {'Million Mult-Adds':>18} {'Million Parameters':>19}"]
    for model, (top1, madds, params) in TABLE10.items():
        lines.append(f"  {'paper: ' + model:<34} {top1:13.1f}% {madds:18.0f} {params:19.1f}")
    ours = f"ours: {name} ({result['classes']} classes)"
    lines.append(f"  {ours:<34} {100 * result['best_top1']:13.1f}% "
                 f"{result['mult_adds'] / 1e6:18.0f} {result['params'] / 1e6:19.2f}")
    return "\n".join(lines)


__all__ = ["FinetuneTask", "TABLE10", "TRANSFER", "confusion", "finetune", "finetune_text", "is_stanford_dogs",
           "photo_dogs_layout", "stanford_dogs_folders"]
