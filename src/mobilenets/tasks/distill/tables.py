"""The paper's distillation tables with our numbers: Table 12 (face attributes: mean AP, mult-adds,
parameters) and Table 14 (FaceNet: TAR at FAR 1e-4, mult-adds, parameters).

Mult-adds and parameters are counted by :func:`mobilenets.cost.count.measure_cost` on a real
forward pass of the student at its own resolution (so a learnt projection head is counted too);
a teacher that is not a torch module (dlib, ONNX) shows ``-`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobilenets.tasks.distill.metrics import VerificationReport


def student_cost(model: Any) -> tuple[float, float] | None:
    """``(million mult-adds, million parameters)`` of a torch student, or None for anything else."""
    import torch

    from mobilenets.cost.count import measure_cost

    if not isinstance(model, torch.nn.Module):
        return None
    res = int(model.config.resolution)
    report = measure_cost(model.eval(), (3, res, res))
    return report.mult_adds / 1e6, report.params / 1e6


def cost_cells(model: Any) -> str:
    cost = student_cost(model)
    return f"{'-':>18} {'-':>18}" if cost is None else f"{cost[0]:>18.1f} {cost[1]:>18.2f}"


def attribute_table(rows: Sequence[tuple[str, float, Any]]) -> str:
    """Table 12 layout: one ``(name, mean AP in 0..1, model or None)`` per row."""
    w = max([30, *(len(name) for name, _, _ in rows)])
    lines = [f"{'Width Multiplier / Resolution':<{w}} {'Mean AP':>8} {'Million Mult-Adds':>18} "
             f"{'Million Parameters':>18}"]
    lines += [f"{name:<{w}} {100 * ap:7.2f}% {cost_cells(model)}" for name, ap, model in rows]
    return "\n".join(lines)


def embedding_table(rows: Sequence[tuple[str, VerificationReport, Any]], far: float = 1e-4) -> str:
    """Table 14 layout: one ``(name, verification report, model or None)`` per row; the accuracy
    column is the TAR at ``far`` (the paper's "1e-4 Accuracy")."""
    head = f"{format(far, 'g') + ' Accuracy':>14}"
    w = max([30, *(len(name) for name, _, _ in rows)])
    lines = [f"{'Model':<{w}} {head} {'Million Mult-Adds':>18} {'Million Parameters':>18}"]
    for name, report, model in rows:
        tar = report.tar_at_far.get(far)
        cell = f"{100 * tar:13.2f}%" if tar is not None else f"{'-':>14}"
        lines.append(f"{name:<{w}} {cell} {cost_cells(model)}")
    notes = sorted({w for _, r, _ in rows for w in r.warnings if f"FAR {far:g} " in w})
    return "\n".join(lines + [f"note: {w}" for w in notes])


__all__ = ["attribute_table", "embedding_table", "student_cost"]
