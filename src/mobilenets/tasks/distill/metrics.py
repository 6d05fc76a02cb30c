"""Metrics of distilled students: face verification (10-fold accuracy, ROC, TAR at a FAR) and
multi-label mean average precision, plus readers of verification pairs files.

Verification follows the LFW protocol: pairs come in folds; for each fold the distance threshold
is the one with the best accuracy on the other folds, and the fold's accuracy is measured at it.
The ROC is sklearn's ``roc_curve`` on the negated distance (a larger score means "same"). TAR at
FAR f is the highest true-accept rate among ROC points whose false-accept rate is at most f; with
fewer than 1/f different-person pairs such a FAR cannot be measured (LFW has 3,000), so the figure
is only an upper bound on what the ROC can resolve and a warning says so.

Mean AP is sklearn's ``average_precision_score`` per attribute, macro-averaged over the attributes
that have at least one positive; an attribute with no positive has no defined AP and is listed
apart (sklearn would return 0 and drag the mean down for a reason unrelated to the model).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError

DEFAULT_FARS = (1e-3, 1e-4)


def pair_distances(emb_a: Any, emb_b: Any) -> np.ndarray:
    """Euclidean distance between the rows of two ``[N, D]`` arrays (dlib's and FaceNet's measure)."""
    a, b = np.asarray(emb_a, dtype=np.float64), np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise MobileNetsError(f"embeddings must be two [N, D] arrays of the same shape, got {a.shape} and {b.shape}")
    return np.linalg.norm(a - b, axis=1)


def best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)``: the distance threshold (a pair is "same" when its distance is
    <= it) with the best accuracy on these pairs; candidates are the distances themselves and
    one below the smallest (all "different"). Ties go to the smallest threshold."""
    candidates = np.concatenate([[np.min(dist) - 1.0], np.unique(dist)])
    acc = np.array([np.mean((dist <= t) == same) for t in candidates])
    i = int(np.argmax(acc))
    return float(candidates[i]), float(acc[i])


def fold_indices(n: int, folds: int) -> np.ndarray:
    """The fold of each of ``n`` pairs in file order: ``folds`` contiguous, near-equal parts (LFW's
    pairs.txt lists its folds one after the other)."""
    ids = np.empty(n, dtype=np.int64)
    for k, part in enumerate(np.array_split(np.arange(n), folds)):
        ids[part] = k
    return ids


@dataclass
class VerificationReport:
    """What :func:`verification_report` measures; ``to_dict`` gives plain JSON."""

    pairs: int
    same_pairs: int
    different_pairs: int
    accuracy: float  # mean over folds of the held-out fold's accuracy
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    threshold: float  # the best threshold on all pairs
    auc: float
    tar_at_far: dict[float, float]
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "same_pairs": self.same_pairs, "different_pairs": self.different_pairs,
                "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
                "fold_accuracies": self.fold_accuracies, "fold_thresholds": self.fold_thresholds,
                "threshold": self.threshold, "auc": self.auc,
                "tar_at_far": {f"{k:g}": v for k, v in self.tar_at_far.items()}, "warnings": list(self.warnings)}


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """The highest true-accept rate of the ROC points with a false-accept rate <= ``far``."""
    ok = fpr <= far + 1e-12
    return float(np.max(tpr[ok])) if ok.any() else 0.0


def verification_report(emb_a: Any, emb_b: Any, same: Any, folds: int = 10, *,
                        fold_ids: Sequence[int] | None = None, fars: Sequence[float] = DEFAULT_FARS,
                        distances: Any = None) -> VerificationReport:
    """Verification metrics of embedding pairs ``(emb_a[i], emb_b[i])`` labelled ``same[i]``.

    ``folds``: the number of contiguous folds (LFW: 10) unless ``fold_ids`` gives each pair's fold;
    ``distances``: precomputed pair distances instead of embeddings (then ``emb_a``/``emb_b`` are
    ignored and may be None). Warns (and records it in ``warnings``) when there are fewer than
    1/FAR different pairs for a FAR in ``fars``."""
    from sklearn.metrics import auc, roc_curve

    dist = np.asarray(distances, dtype=np.float64) if distances is not None else pair_distances(emb_a, emb_b)
    same = np.asarray(same).astype(bool)
    if dist.ndim != 1 or same.shape != dist.shape:
        raise MobileNetsError(f"need one 'same' flag per pair: {same.shape} flags for {dist.shape[0]} pairs")
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise MobileNetsError(f"verification needs both same and different pairs, got {n_same} same and "
                              f"{n_diff} different")
    ids = np.asarray(fold_ids, dtype=np.int64) if fold_ids is not None else fold_indices(len(dist), folds)
    if ids.shape != dist.shape:
        raise MobileNetsError(f"fold_ids must give one fold per pair ({len(dist)}), got {ids.shape[0]}")
    fold_acc, fold_thr = [], []
    for k in np.unique(ids):
        test = ids == k
        if test.all():
            raise MobileNetsError("verification needs at least 2 folds")
        thr, _ = best_threshold(dist[~test], same[~test])
        fold_thr.append(thr)
        fold_acc.append(float(np.mean((dist[test] <= thr) == same[test])))
    fpr, tpr, _ = roc_curve(same, -dist)
    notes = []
    for far in fars:
        if n_diff < 1.0 / far - 1e-9:
            notes.append(f"TAR at FAR {far:g} is not measurable with {n_diff} different pairs "
                         f"(needs >= {round(1 / far)}): it is the TAR at FAR 0 on these pairs")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return VerificationReport(
        pairs=len(dist), same_pairs=n_same, different_pairs=n_diff, accuracy=float(np.mean(fold_acc)),
        accuracy_std=float(np.std(fold_acc)), fold_accuracies=fold_acc, fold_thresholds=fold_thr,
        threshold=best_threshold(dist, same)[0], auc=float(auc(fpr, tpr)),
        tar_at_far={float(f): tar_at_far(fpr, tpr, f) for f in fars}, fpr=fpr, tpr=tpr, warnings=notes)


def decision_agreement(dist_a: Any, threshold_a: float, dist_b: Any, threshold_b: float) -> float:
    """Fraction of pairs on which two models make the same same/different decision, each at its
    own threshold (e.g. the student's and the teacher's)."""
    a = np.asarray(dist_a) <= threshold_a
    b = np.asarray(dist_b) <= threshold_b
    return float(np.mean(a == b))


def format_verification(reports: dict[str, VerificationReport]) -> str:
    """The paper's Table 14 layout (one row per model): 10-fold accuracy, TAR at each FAR, AUC."""
    fars = sorted({f for r in reports.values() for f in r.tar_at_far}, reverse=True)
    head = f"{'model':<18} {'accuracy':>14}" + "".join(f" {'TAR@FAR ' + format(f, 'g'):>14}" for f in fars) + "     AUC"
    rows = [head]
    for name, r in reports.items():
        rows.append(f"{name:<18} {100 * r.accuracy:6.2f}% ±{100 * r.accuracy_std:4.1f}"
                    + "".join(f" {100 * r.tar_at_far.get(f, float('nan')):13.2f}%" for f in fars) + f"  {r.auc:.4f}")
    notes = sorted({w for r in reports.values() for w in r.warnings})
    return "\n".join(rows + [f"note: {w}" for w in notes])


def plot_roc(reports: dict[str, VerificationReport], path: str | Path) -> Path:
    """An ROC PNG (log FAR axis) of each report; returns the path."""
    from mobilenets.utils.scoped import matplotlib_backend

    path = Path(path)
    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
        for name, r in reports.items():
            floor = 0.5 / max(r.different_pairs, 1)  # FAR 0 drawn at half a pair, not at -inf
            ax.plot(np.maximum(r.fpr, floor), r.tpr, label=f"{name} (AUC {r.auc:.3f})")
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title("verification ROC")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    return path


def mean_average_precision(y_true: Any, scores: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-attribute average precision (sklearn) of ``scores`` [N, A] against 0/1 ``y_true`` [N, A],
    and their mean over the attributes with at least one positive. Returns ``{"mean_ap",
    "per_attribute": {name: ap}, "no_positives": [names], "attributes": count}``."""
    from sklearn.metrics import average_precision_score

    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s.reshape(-1, 1)
    if y.ndim != 2 or y.shape != s.shape:
        raise MobileNetsError(f"y_true and scores must both be [N, A], got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise MobileNetsError("y_true must hold 0/1 labels (convert CelebA's -1/+1 with labels > 0)")
    names = list(names) if names is not None else [str(i) for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise MobileNetsError(f"{len(names)} names for {y.shape[1]} attributes")
    per, none = {}, []
    for j, name in enumerate(names):
        if not y[:, j].any():
            none.append(name)
            continue
        per[name] = float(average_precision_score(y[:, j], s[:, j]))
    mean = float(np.mean(list(per.values()))) if per else float("nan")
    return {"mean_ap": mean, "per_attribute": per, "no_positives": none, "attributes": len(names)}


def format_average_precision(result: dict[str, Any]) -> str:
    """A per-attribute AP table, then the mean and the attributes without positives."""
    rows = [f"{'attribute':<20} {'AP':>8}"]
    rows += [f"{name:<20} {100 * ap:7.2f}%" for name, ap in result["per_attribute"].items()]
    rows.append(f"{'mean AP':<20} {100 * result['mean_ap']:7.2f}%  (over {len(result['per_attribute'])} "
                f"of {result['attributes']} attributes)")
    if result["no_positives"]:
        rows.append(f"no positives (no AP, not averaged): {', '.join(result['no_positives'])}")
    return "\n".join(rows)


@dataclass(frozen=True)
class Pairs:
    """Verification pairs: image paths, same-person flags and each pair's fold."""

    a: list[str]
    b: list[str]
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


def _need_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"pairs file not found: {path}")
    return path


def read_lfw_pairs(path: str | Path, images: str | Path | None = None, ext: str = ".jpg") -> Pairs:
    """LFW's ``pairs.txt``: a header ``folds n`` then, per fold, n same pairs ``name i j`` and n
    different pairs ``name1 i name2 j``. Image paths are ``images/name/name_000i.jpg`` (``images``
    defaults to the file's folder)."""
    path = _need_file(path)
    root = Path(images) if images is not None else path.parent
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        folds, n = (int(x) for x in lines[0])
    except (ValueError, IndexError):
        raise MobileNetsError(f"{path}: the first line must be 'folds pairs_per_class', got {lines[:1]}") from None
    body = lines[1:]
    if len(body) != 2 * folds * n:
        raise MobileNetsError(f"{path}: {folds} folds of {n} same + {n} different pairs need {2 * folds * n} lines, "
                              f"got {len(body)}")

    def img(name: str, i: str) -> str:
        return str(root / name / f"{name}_{int(i):04d}{ext}")

    a, b, same, fold = [], [], [], []
    for k, parts in enumerate(body):
        try:
            if len(parts) == 3:
                a.append(img(parts[0], parts[1]))
                b.append(img(parts[0], parts[2]))
                same.append(True)
            elif len(parts) == 4:
                a.append(img(parts[0], parts[1]))
                b.append(img(parts[2], parts[3]))
                same.append(False)
            else:
                raise ValueError
        except ValueError:
            raise MobileNetsError(f"{path} line {k + 2}: expected 'name i j' or 'name1 i name2 j', "
                                  f"got {' '.join(parts)!r}") from None
        fold.append(k // (2 * n))
    return Pairs(a, b, np.array(same), np.array(fold))


# "same"/"different" are not values: "same" is the usual header of the column.
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def read_pairs_csv(path: str | Path, images: str | Path | None = None, folds: int = 10) -> Pairs:
    """A ``path_a,path_b,same`` CSV (same: 1/0, true/false, yes/no; an optional header
    row); relative paths are under ``images`` (default: the file's folder). Folds are contiguous."""
    path = _need_file(path)
    root = Path(images) if images is not None else path.parent
    a, b, same = [], [], []
    with path.open(newline="") as f:
        for k, row in enumerate(csv.reader(f)):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise MobileNetsError(f"{path} line {k + 1}: expected 'path_a,path_b,same', got {row!r}")
            flag = row[2].strip().lower()
            if flag not in _TRUE | _FALSE:
                if k == 0:  # a header
                    continue
                raise MobileNetsError(f"{path} line {k + 1}: 'same' must be 1/0, true/false or yes/no, "
                                      f"got {row[2]!r}")
            a.append(str(root / row[0].strip()))
            b.append(str(root / row[1].strip()))
            same.append(flag in _TRUE)
    if not a:
        raise MobileNetsError(f"{path} holds no pairs")
    return Pairs(a, b, np.array(same), fold_indices(len(a), folds))


def read_pairs(path: str | Path, images: str | Path | None = None) -> Pairs:
    """LFW ``pairs.txt`` layout, or a ``.csv`` of ``path_a,path_b,same``."""
    return read_pairs_csv(path, images) if str(path).lower().endswith(".csv") else read_lfw_pairs(path, images)


def usable_pairs(pairs: Pairs, source: str | Path = "the pairs file") -> tuple[Pairs, list[tuple[str, str]]]:
    """``(the pairs whose two images decode, the images that do not with why)``, checked before
    any work: a pair naming a missing or corrupt image is skipped (and counted by the caller); one
    line when what is left cannot be scored (no pair, or no same or no different pair)."""
    from mobilenets.tasks.distill.data import read_rgb

    problems: dict[str, str | None] = {}
    for f in dict.fromkeys([*pairs.a, *pairs.b]):
        if not os.path.isfile(f):
            problems[f] = "image not found"
            continue
        try:
            read_rgb(f)
            problems[f] = None
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
            problems[f] = f"unreadable image ({type(exc).__name__})"
    keep = np.array([problems[x] is None and problems[y] is None for x, y in zip(pairs.a, pairs.b)], bool)
    bad = [(f, why) for f, why in problems.items() if why is not None]
    kept = Pairs([x for x, k in zip(pairs.a, keep) if k], [y for y, k in zip(pairs.b, keep) if k],
                 pairs.same[keep], pairs.fold[keep])
    n_same = int(kept.same.sum())
    if n_same == 0 or n_same == len(kept):
        first = f" (first: {bad[0][0]}: {bad[0][1]})" if bad else ""
        raise MobileNetsError(f"{source}: {len(kept)} of {len(pairs)} pairs have both images readable, {n_same} of "
                              f"them same-person: verification needs same and different pairs{first}")
    return kept, bad


__all__ = ["DEFAULT_FARS", "Pairs", "VerificationReport", "best_threshold", "decision_agreement", "fold_indices",
           "format_average_precision", "format_verification", "mean_average_precision", "pair_distances", "plot_roc",
           "read_lfw_pairs", "read_pairs", "read_pairs_csv", "tar_at_far", "usable_pairs", "verification_report"]
