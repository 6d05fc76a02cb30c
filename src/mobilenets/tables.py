"""Text renderings of cost reports and of the paper's tables, reproduced beside the printed figures."""

from __future__ import annotations

from typing import Any, Sequence

from . import paper
from .cost import KIND_LABELS, TORCHVISION_PREFIX, CostReport, analytical_cost, model_cost, single_layer_rows
from .registry import PAPER_ALPHAS, PAPER_RESOLUTIONS, get_config, list_models, model_name


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
        h, w = layer.in_shape[1:] if len(layer.in_shape) == 3 else (0, 0)
        return f"Pool / s{layer.stride}", f"Pool {h}x{w}"
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


def _paper_figures(name: str) -> tuple[float, float, float] | None:
    for table in paper.TABLES.values():
        if name in table:
            return table[name]
    return None


def cost_text(report: CostReport) -> str:
    """What ``mobilenet cost`` prints: Table 1 with costs, Table 2's shares and the totals."""
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
    printed = _paper_figures(report.model)
    if printed and report.config and report.config.get("num_classes") == 1000:
        out.append(f"The paper prints: {printed[1]:g}M mult-adds, {printed[2]:g}M parameters.")
    return "\n".join(out)


def single_layer_text() -> str:
    rows = []
    for row in single_layer_rows():
        p_ma, p_p = paper.TABLE3[row["layer"]]
        rows.append([row["layer"], f"{row['mult_adds'] / 1e6:.1f}", f"{p_ma:g}", f"{row['params'] / 1e6:.2f}", f"{p_p:g}"])
    return ("Paper Table 3: one 14x14 layer, M = N = 512, 3x3 kernel (millions)\n"
            + format_table(["layer", "mult-adds", "paper", "params", "paper"], rows))


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


# --- the paper's tables, reproduced ------------------------------------------------------------

def paper_tables_data(reference_nets: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every row of paper Tables 2 and 4-9 with our count beside the printed figure.

    ``match`` says how ours gives the printed figure: "rounded", "truncated" or "" (neither).
    Torchvision's networks are counted on a real forward pass (their torchvision form, which can
    differ from the networks the paper cites); skip them with ``reference_nets=False``.
    """
    data: dict[str, list[dict[str, Any]]] = {}
    base = analytical_cost(get_config("mobilenet_v1_1.0_224"))
    data["Table 2: Resource per layer type (1.0 MobileNet-224)"] = [
        dict(model=KIND_LABELS[kind], mult_adds_share=100 * base.by_type[kind]["mult_adds_share"], paper_mult_adds_share=pma,
             params_share=100 * base.by_type[kind]["params_share"], paper_params_share=pp,
             match_mult_adds=paper.printed_match(100 * base.by_type[kind]["mult_adds_share"], pma),
             match_params=paper.printed_match(100 * base.by_type[kind]["params_share"], pp))
        for kind, (pma, pp) in paper.TABLE2.items()
    ]
    for title, table in paper.TABLES.items():
        rows = []
        for name, (top1, p_ma, p_params) in table.items():
            if name.startswith(TORCHVISION_PREFIX) and not reference_nets:
                continue
            report = model_cost(name)
            ma, params = report.mult_adds / 1e6, report.params / 1e6
            rows.append(dict(model=name, source=report.source, paper_top1=top1,
                             mult_adds=ma, paper_mult_adds=p_ma, match_mult_adds=paper.printed_match(ma, p_ma),
                             params=params, paper_params=p_params, match_params=paper.printed_match(params, p_params)))
        data[title] = rows
    data["The 16 paper models (Figures 4 and 5)"] = [
        dict(model=model_name(a, r), mult_adds=analytical_cost(get_config(model_name(a, r))).mult_adds / 1e6,
             params=analytical_cost(get_config(model_name(a, r))).params / 1e6)
        for a in PAPER_ALPHAS for r in PAPER_RESOLUTIONS
    ]
    return data


def _mark(match: str) -> str:
    return {"rounded": "=", "truncated": "~ (truncated)", "": "differs"}[match]


def paper_tables_text(reference_nets: bool = True) -> str:
    data = paper_tables_data(reference_nets)
    out = ["MobileNets (Howard et al., 2017): the paper's cost tables, recounted.",
           "Ours: mult-adds and parameters counted as the paper does (conv/FC weights; no BN, biases, pooling).",
           "Marks: '=' ours rounds to the printed figure; '~' ours gives it only when truncated.", ""]
    for title, rows in data.items():
        out.append(title)
        if title.startswith("Table 2"):
            body = [[r["model"], f"{r['mult_adds_share']:.2f}%", f"{r['paper_mult_adds_share']:.2f}%", _mark(r["match_mult_adds"]),
                     f"{r['params_share']:.2f}%", f"{r['paper_params_share']:.2f}%", _mark(r["match_params"])] for r in rows]
            out.append(format_table(["type", "mult-adds", "paper", "", "params", "paper", ""], body, "lrrlrrl"))
            out.append("Note: the paper prints 1.19% for the first conv's mult-adds; the count is 1.91% (a digit swap:\n"
                       "with 1.91 the column sums to 100.01%, with 1.19 to 99.29%). We report the count.")
        elif title.startswith("The 16"):
            body = [[r["model"], f"{r['mult_adds']:.1f}", f"{r['params']:.3f}"] for r in rows]
            out.append(format_table(["model", "mult-adds (M)", "params (M)"], body))
        else:
            body = [[r["model"], f"{r['paper_top1']:g}%", f"{r['mult_adds']:,.2f}", f"{r['paper_mult_adds']:g}", _mark(r["match_mult_adds"]),
                     f"{r['params']:.3f}", f"{r['paper_params']:g}", _mark(r["match_params"])] for r in rows]
            out.append(format_table(["model", "paper top-1", "mult-adds (M)", "paper", "", "params (M)", "paper", ""], body,
                                    "lrrrlrrl"))
            if any(r["model"].startswith(TORCHVISION_PREFIX) for r in rows):
                out.append("torchvision's networks are measured on a forward pass; they are not always the exact\n"
                           "networks the paper cites (e.g. GoogLeNet's BN variant, AlexNet's one-tower form).")
        out.append("")
    out.append(single_layer_text())
    return "\n".join(out)


