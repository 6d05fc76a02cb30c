"""Text renderings of cost reports: paper Table 1 with costs, Table 2 shares, the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mobilenets.cost.count import KIND_LABELS, CostReport, analytical_cost
from mobilenets.models.registry import get_config, list_models


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table; ``align`` has one "l" or "r" per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    lines = []
    for j, row in enumerate(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def millions(n: float, decimals: int = 1) -> str:
    return f"{n / 1e6:,.{decimals}f}M"


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:  # (C, H, W) printed as the paper does, H x W x C
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(s) for s in shape)


def _type_and_filter(layer) -> tuple[str, str]:
    cin, cout = layer.in_shape[0], layer.out_shape[0]
    if layer.kind == "fc":
        return "FC / s1", f"{cin}x{cout}"
    if layer.kind == "pool":
        # The window, not the input: other_ops counts one read per window element per output.
        out = 1
        for d in layer.out_shape:
            out *= d
        window = layer.other_ops // max(out, 1)
        side = int(round(window ** 0.5))
        shape = f"{side}x{side}" if side * side == window else f"{window}"
        global_pool = len(layer.out_shape) == 3 and layer.out_shape[1:] == (1, 1)
        return f"Pool / s{layer.stride}", f"Pool {shape}" + (" (global)" if global_pool else "")
    kh, kw = layer.kernel
    if layer.kind.startswith("dw"):
        return f"Conv dw / s{layer.stride}", f"{kh}x{kw}x{cin} dw"
    return f"Conv / s{layer.stride}", f"{kh}x{kw}x{cin}x{cout}"


def layer_table(report: CostReport) -> str:
    """Paper Table 1 with mult-add and parameter columns."""
    rows = []
    for layer in report.layers:
        kind, filt = _type_and_filter(layer)
        rows.append([layer.name, kind, filt, _shape(layer.in_shape), f"{layer.mult_adds:,}", f"{layer.params:,}"])
    return format_table(["layer", "type / stride", "filter shape", "input size", "mult-adds", "params"], rows,
                        "llllrr")


def type_table(report: CostReport) -> str:
    """Paper Table 2: share of mult-adds and parameters by layer type."""
    rows = []
    for kind, row in sorted(report.by_type.items(), key=lambda kv: -kv[1]["mult_adds"]):
        if kind == "pool":
            continue
        rows.append([KIND_LABELS.get(kind, kind), f"{row['mult_adds']:,}", f"{100 * row['mult_adds_share']:.2f}%",
                     f"{row['params']:,}", f"{100 * row['params_share']:.2f}%"])
    return format_table(["type", "mult-adds", "share", "params", "share"], rows)


def cost_text(report: CostReport, printed: tuple[float, float, float] | None = None) -> str:
    """What ``mobilenet cost`` prints: Table 1 with costs, Table 2's shares and the totals;
    ``printed`` (top-1, mult-adds M, params M, as :func:`mobilenets.paper.printed.figures`
    gives them) adds the paper's figures for the model."""
    h, w = report.resolution
    out = [f"{report.model}: {report.source} count at {h}x{w}", "", layer_table(report), "",
           "Share by layer type (paper Table 2)", type_table(report), ""]
    out.append(
        f"Total: {report.mult_adds:,} mult-adds ({millions(report.mult_adds)}), "
        f"{report.params:,} parameters ({millions(report.params, 2)}) counting conv/FC weights as the paper does; "
        f"{report.params_total:,} with BatchNorm and biases."
    )
    if report.other_ops:
        out.append(f"Pooling: {report.other_ops:,} additions/comparisons (not mult-adds).")
    if printed and report.config and report.config.get("num_classes") == 1000:
        out.append(f"The paper prints: {printed[1]:g}M mult-adds, {printed[2]:g}M parameters.")
    return "\n".join(out)


def models_rows() -> list[dict[str, Any]]:
    rows = []
    for name in list_models():
        cfg = get_config(name)
        report = analytical_cost(cfg, name)
        rows.append(dict(name=name, alpha=cfg.alpha, resolution=cfg.resolution, variant=cfg.variant,
                         mult_adds=report.mult_adds, params=report.params, params_total=report.params_total))
    return rows


def models_text() -> str:
    rows = [[r["name"], f"{r['alpha']:g}", r["resolution"], r["variant"], f"{r['mult_adds'] / 1e6:.1f}",
             f"{r['params'] / 1e6:.3f}", f"{r['params_total'] / 1e6:.3f}"] for r in models_rows()]
    return format_table(["model", "alpha", "res", "variant", "mult-adds (M)", "params (M)", "all params (M)"], rows,
                        "lrrlrrr")
