"""COCO evaluation: the 12 numbers, per-class AP, results files and a precision-recall plot.

The numbers are COCO's own (``COCOeval`` over ``bbox``): AP at IoU 0.5:0.95, AP50, AP75, AP for
small/medium/large objects, AR with 1/10/100 detections, AR small/medium/large. They come from
``faster-coco-eval`` (the same algorithm as pycocotools, in C++, several times faster), or from
``pycocotools`` when faster-coco-eval is missing (``backend="pycocotools"`` asks for it; the tests
check that both give the same numbers to 1e-6). A detections file is COCO's results format: a
JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

:class:`DetectionMetrics` is what the training loop accumulates over the validation pass: the
detections and the ground truth of each batch, in the original image coordinates, scored at the
end of the pass.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.train.tasks import Metrics
from mobilenets.utils.scoped import matplotlib_backend, quiet_prints

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def _read_json(path: str | os.PathLike, what: str) -> Any:
    path = Path(path)
    if path.is_dir():
        raise MobileNetsError(f"{what} {path} is a folder; give the JSON file")
    if not path.is_file():
        raise DataNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MobileNetsError(f"{path} is not valid JSON: {exc}") from None


def _check_results(results: Any, gt: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(results, list):
        raise MobileNetsError("a results file is a JSON list of {image_id, category_id, bbox, score}")
    images = {img["id"] for img in gt["images"]}
    categories = {c["id"] for c in gt["categories"]}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(r):
            raise MobileNetsError(f"result {i} is not an object with image_id, category_id, bbox and score: {r!r}")
        if r["image_id"] not in images:
            raise MobileNetsError(f"result {i} names image_id {r['image_id']!r}, which the annotations do not have")
        if r["category_id"] not in categories:
            raise MobileNetsError(f"result {i} names category_id {r['category_id']!r}, which the annotations do not have")
    return results


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise MobileNetsError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return "pycocotools"
    return "faster_coco_eval"


def run_cocoeval(gt: dict[str, Any], results: list[dict[str, Any]], backend: str = "auto"):
    """The evaluated-and-accumulated ``COCOeval`` object (pycocotools' interface) of ``results``
    against the ground truth ``gt`` (a COCO dictionary), and the backend used."""
    backend = _backend(backend)
    gt = copy.deepcopy(gt)  # both libraries add fields to what they are given
    gt.setdefault("annotations", [])
    gt.setdefault("info", {})
    empty = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
    # both print progress lines, from Python: redirect sys.stdout/stderr only, so that during a
    # validation epoch the other threads' output (tqdm, workers' tracebacks) still shows
    with quiet_prints():
        if backend == "faster_coco_eval":
            from faster_coco_eval import COCO, COCOeval_faster

            coco_gt = COCO(gt)
            coco_dt = coco_gt.loadRes(copy.deepcopy(results)) if results else COCO(copy.deepcopy(empty))
            ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a: None)
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            if results:
                coco_dt = coco_gt.loadRes(copy.deepcopy(results))
            else:  # pycocotools' loadRes fails on an empty list: no detections is an empty results set
                coco_dt = COCO()
                coco_dt.dataset = copy.deepcopy(empty)
                coco_dt.createIndex()
            ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, backend


def per_class_ap(ev, gt: dict[str, Any]) -> dict[str, float]:
    """AP (IoU 0.5:0.95, all areas, 100 detections) of each category with ground truth."""
    precision = np.asarray(ev.eval["precision"])  # [IoU, recall, category, area, max dets]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        if p.size:
            out[names.get(cat, str(cat))] = float(p.mean())
    return out


def coco_metrics(gt: dict[str, Any], results: list[dict[str, Any]], backend: str = "auto") -> dict[str, Any]:
    """``{"stats": {AP, AP50, ... ARl}, "per_class": {name: AP}, "backend": ...}``."""
    ev, used = run_cocoeval(gt, results, backend)
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    return {"stats": stats, "per_class": per_class_ap(ev, gt), "backend": used, "eval": ev}


def plot_pr(ev, gt: dict[str, Any], path: str | os.PathLike, title: str = "precision-recall") -> Path:
    """A PNG of each class's precision-recall curve at IoU 0.5 and 0.75 (all areas, 100 detections)."""
    precision = np.asarray(ev.eval["precision"])
    recall = np.asarray(ev.params.recThrs)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    ious = list(np.round(ev.params.iouThrs, 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib_backend("Agg") as plt:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
        for ax, iou in zip(axes, (0.5, 0.75)):
            t = ious.index(iou)
            for k, cat in enumerate(ev.params.catIds):
                p = precision[t, :, k, 0, -1]
                if (p > -1).any():
                    ap = p[p > -1].mean()
                    ax.plot(recall, np.where(p > -1, p, np.nan), label=f"{names.get(cat, cat)} (AP {ap:.3f})")
            ax.set(title=f"IoU {iou}", xlabel="recall", xlim=(0, 1), ylim=(0, 1.02))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower left")
        axes[0].set_ylabel("precision")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def evaluate_files(annotations: str | os.PathLike, results: str | os.PathLike, *, backend: str = "auto",
                   plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """COCO's 12 numbers of a results file against an annotations file (``mobilenet detect eval
    --annotations A --results R``), per-class AP, and optionally the precision-recall PNG."""
    if plot is not None:  # before any work
        from mobilenets.deploy.outputs import check_file_target

        check_file_target(plot, "--plot")
    gt = _read_json(annotations, "annotations file")
    if not isinstance(gt, dict) or not {"images", "categories"} <= set(gt):
        raise MobileNetsError(f"{annotations} is not a COCO instances file (needs 'images' and 'categories')")
    found = _check_results(_read_json(results, "results file"), gt)
    out = coco_metrics(gt, found, backend)
    if plot is not None:
        out["plot"] = str(plot_pr(out["eval"], gt, plot, f"{Path(results).name} on {Path(annotations).name}"))
    out.pop("eval")
    return {"annotations": str(annotations), "results": str(results), "detections": len(found), **out}


def to_results(detections: dict[str, Any], image_id: int, category_ids: list[int]) -> list[dict[str, Any]]:
    """One image's detections (``boxes`` pixel xyxy, ``scores``, ``labels`` 1..K) as COCO results."""
    boxes = np.asarray(detections["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(detections["scores"], dtype=np.float64).reshape(-1)
    labels = np.asarray(detections["labels"]).reshape(-1)
    return [{"image_id": int(image_id), "category_id": int(category_ids[int(lab) - 1]),
             "bbox": [round(float(b[0]), 3), round(float(b[1]), 3), round(float(b[2] - b[0]), 3),
                      round(float(b[3] - b[1]), 3)], "score": round(float(s), 5)}
            for b, s, lab in zip(boxes, scores, labels)]


def original_scale(boxes, target: dict[str, Any]):
    """Boxes of the (resized) input mapped back to the original image (``orig_size`` vs ``size``)."""
    (oh, ow), (h, w) = target.get("orig_size", target.get("size")), target.get("size", target.get("orig_size"))
    scale = boxes.new_tensor([ow / w, oh / h, ow / w, oh / h])
    return boxes * scale


class DetectionMetrics(Metrics):
    """COCO's numbers over a validation pass (boxes scored in original image coordinates; the
    ground truth are the targets' boxes, crowd annotations left out)."""

    def __init__(self, class_names: list[str]) -> None:
        self.names = class_names
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def update(self, outputs, targets) -> None:
        ids = list(range(1, len(self.names) + 1))
        for det, tgt in zip(outputs, targets):
            image_id = len(self.images) + 1  # own ids: a metric must not trust ids to be unique across splits
            oh, ow = tgt.get("orig_size", tgt.get("size"))
            self.images.append({"id": image_id, "width": int(ow), "height": int(oh)})
            gt_boxes = original_scale(tgt["boxes"].detach().float().cpu(), tgt)
            for b, lab in zip(gt_boxes.tolist(), tgt["labels"].tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id, "category_id": lab,
                                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
            boxes = original_scale(det["boxes"].detach().float().cpu(), tgt)
            self.results += to_results({"boxes": boxes, "scores": det["scores"].detach().float().cpu(),
                                        "labels": det["labels"].cpu()}, image_id, ids)

    def compute(self) -> dict[str, float]:
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.names)]
        gt = {"images": self.images, "annotations": self.annotations, "categories": categories}
        if not self.images:
            return {"images": 0}
        out = coco_metrics(gt, self.results)
        return {**out["stats"], "images": len(self.images)}


__all__ = ["BACKENDS", "DetectionMetrics", "STAT_NAMES", "coco_metrics", "evaluate_files", "original_scale",
           "per_class_ap", "plot_pr", "run_cocoeval", "to_results"]
