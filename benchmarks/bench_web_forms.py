"""Graph forms of MobileNet's layers in ONNX Runtime Web, timed in the same headless Chromium.

The web export's kernel plan (:mod:`mobilenets.deploy.web.kernels`) picks, per layer, the ONNX form
that ONNX Runtime Web's WebAssembly kernels run fastest. This script measures the choices it rests on,
so they can be checked again on another CPU, browser or ONNX Runtime Web release. For each pointwise
(1x1) layer shape of MobileNet 1.0 (channels x map: 64x112, 128x56, 256x28, 512x14, 1024x7) it times a
chain of ``--layers`` such layers (seeded random weights, bias, ReLU6) in four forms:

- ``conv``: Conv + Clip, which ONNX Runtime fuses into one FusedConv (what the plan keeps on maps
  larger than 14x14; MLAS runs it as a threaded GEMM, then the bias and ReLU6 on one thread);
- ``gemm-nhwc``: the plan's form on maps of at most 14x14: Transpose, Reshape, Gemm over positions
  with constant (prepacked) weights, Clip, Reshape, Transpose;
- ``gemm-nchw``: a Gemm of the weights by the NCHW map with the bias as its C input, then
  HardSigmoid(x/6), which ONNX Runtime fuses into FusedGemm and runs on every thread (it is ReLU6/6:
  the next layer's weights would take the 6);
- ``gemm-only``: the Conv without bias or ReLU6, the GEMM's own cost (a floor, not a model).

For the 3x3 depthwise layers (128x56, 512x14, 1024x7) it times ``dw`` (the Conv with one channel per
group, as exported: ONNX Runtime Web runs an im2col and a one-row GEMM per channel) against
``dw-blockdiag-G``: the same values from a grouped conv of G channels per group whose weights are zero
off the diagonal, so that each GEMM has G rows (G times the multiply-adds, the same im2col).

It also times the first layers of 1.0-224 (to the last 56x56 map, where about 40 % of the model's time
goes) as one image and as its two halves with an 8-row overlap in a batch of two (``split``): the
halves run one per thread through MLAS's batched paths; the merge of the halves is not timed. And it
times the whole 1.0-224 model with the plan as shipped (``plan``), with its Gemm rule on 7x7 maps only
(``plan-7x7``) and without the plan (``no-plan``), which decides the rule where single layers disagree.

Every (form, shape, threads) runs in its own page, loaded once; pages are timed in interleaved rounds
(``--rounds`` of ``--runs`` inferences after warm-up), and each row gives the median time per layer,
its p10-p90 spread, and its ratio to ``conv`` (``dw``, ``whole``, ``plan``) at the same shape and threads.

    python benchmarks/bench_web_forms.py --threads 1,2 --rounds 8 --json out.json
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from _browser import open_pages, summarize, time_rounds
from _cli import ScriptParser, positive_int
from mobilenets.bench.run import machine_info
from mobilenets.deploy.web.browser import chromium, chromium_version, serve
from mobilenets.deploy.web.export import runtime_folder

SHAPES = ((64, 112), (128, 56), (256, 28), (512, 14), (1024, 7))
FORMS = ("conv", "gemm-nhwc", "gemm-nchw", "gemm-only")
DW_SHAPES = ((128, 56), (512, 14), (1024, 7))
DW_FORMS = ("dw", "dw-blockdiag-2", "dw-blockdiag-4")
RUNTIME = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")

PAGE = """<!doctype html><meta charset="utf-8"><title>forms</title>
<script type="module">
const q = new URLSearchParams(location.search);
const ort = await import('./ort.wasm.min.mjs');
ort.env.wasm.wasmPaths = new URL('./', location.href).href;
ort.env.wasm.numThreads = Number(q.get('threads'));
const session = await ort.InferenceSession.create(q.get('model'), { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
const shape = JSON.parse(q.get('shape'));
const input = new Float32Array(shape.reduce((a, b) => a * b, 1));
for (let i = 0; i < input.length; i++) input[i] = Math.sin(i * 0.37) * 1.5;
const run = async () => (await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', input, shape) }))[session.outputNames[0]].data;
for (let i = 0; i < 5; i++) await run();  // warm-up
window.bench = { async time(n) { const t = []; for (let i = 0; i < n; i++) { const s = performance.now(); await run(); t.push(performance.now() - s); } return t; } };
</script>"""


def _const(name: str, value) -> onnx.TensorProto:
    return nh.from_array(np.asarray(value), name)


def chain(form: str, c: int, s: int, layers: int, seed: int = 0) -> onnx.ModelProto:
    """``layers`` pointwise layers c -> c on an s x s map, in ``form``; input and output [1, c, s, s]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], [_const("lo", np.float32(0)), _const("hi", np.float32(6)),
                        _const("nhwc2", np.array([s * s, c], np.int64)), _const("nhwc4", np.array([1, s, s, c], np.int64)),
                        _const("nchw2", np.array([c, s * s], np.int64)), _const("nchw4", np.array([1, c, s, s], np.int64))]
    x = "x"
    if form == "gemm-nchw":
        nodes.append(h.make_node("Reshape", [x, "nchw2"], ["x2"]))
        x = "x2"
    for i in range(layers):
        w = (rng.standard_normal((c, c)) / np.sqrt(c)).astype(np.float32)
        b = (rng.standard_normal(c) * 0.1).astype(np.float32)
        y = f"y{i}"
        if form in ("conv", "gemm-only"):
            inits.append(_const(f"w{i}", w.reshape(c, c, 1, 1)))
            if form == "gemm-only":
                nodes.append(h.make_node("Conv", [x, f"w{i}"], [y], kernel_shape=[1, 1]))
            else:
                inits.append(_const(f"b{i}", b))
                nodes += [h.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[1, 1]),
                          h.make_node("Clip", [f"c{i}", "lo", "hi"], [y])]
        elif form == "gemm-nhwc":
            inits += [_const(f"w{i}", w), _const(f"b{i}", b)]
            nodes += [h.make_node("Transpose", [x], [f"t{i}"], perm=[0, 2, 3, 1]), h.make_node("Reshape", [f"t{i}", "nhwc2"], [f"r{i}"]),
                      h.make_node("Gemm", [f"r{i}", f"w{i}", f"b{i}"], [f"g{i}"], transB=1),
                      h.make_node("Clip", [f"g{i}", "lo", "hi"], [f"a{i}"]), h.make_node("Reshape", [f"a{i}", "nhwc4"], [f"n{i}"]),
                      h.make_node("Transpose", [f"n{i}"], [y], perm=[0, 3, 1, 2])]
        else:  # gemm-nchw
            inits += [_const(f"w{i}", w), _const(f"b{i}", b.reshape(c, 1))]
            nodes += [h.make_node("Gemm", [f"w{i}", x, f"b{i}"], [f"g{i}"]),
                      h.make_node("HardSigmoid", [f"g{i}"], [y], alpha=1 / 6, beta=0.0)]
        x = y
    if form == "gemm-nchw":
        nodes.append(h.make_node("Reshape", [x, "nchw4"], ["out"]))
        x = "out"
    used = {n for node in nodes for n in node.input}
    graph = h.make_graph(nodes, f"{form}-{c}x{s}", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, s, s])],
                         [h.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, s, s])], [t for t in inits if t.name in used])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def depthwise_chain(form: str, c: int, s: int, layers: int, seed: int = 0) -> onnx.ModelProto:
    """``layers`` 3x3 depthwise layers (ReLU6) on c x s x s, as ``dw`` or ``dw-blockdiag-G``."""
    rng = np.random.default_rng(seed)
    per = 1 if form == "dw" else int(form.rsplit("-", 1)[1])
    nodes, inits, x = [], [_const("lo", np.float32(0)), _const("hi", np.float32(6))], "x"
    for i in range(layers):
        w = (rng.standard_normal((c, 3, 3)) / 3).astype(np.float32)
        full = np.zeros((c, per, 3, 3), np.float32)
        full[np.arange(c), np.arange(c) % per] = w  # channel k of a group reads only its own input
        inits += [_const(f"w{i}", full), _const(f"b{i}", (rng.standard_normal(c) * 0.1).astype(np.float32))]
        nodes += [h.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=c // per),
                  h.make_node("Clip", [f"c{i}", "lo", "hi"], [f"y{i}"])]
        x = f"y{i}"
    graph = h.make_graph(nodes, f"{form}-{c}x{s}", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, s, s])],
                         [h.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, s, s])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def whole_models(folder: Path) -> dict[str, onnx.ModelProto]:
    """MobileNet 1.0-224 (seeded, as in ``bench_web.py``) exported as ONNX without the kernel plan
    (``no-plan``), with the plan's Gemm rule as shipped (``plan``: maps of at most
    :data:`~mobilenets.deploy.web.kernels.GEMM_MAX_POSITIONS` positions) and with it on 7x7 maps only
    (``plan-7x7``); and ``head``: the planned model cut after its last 56x56 map, with a free batch and
    height, so that its two halves can run as a batch of two."""
    from bench_web import _model
    from mobilenets.deploy.web import export_web
    from mobilenets.deploy.web.kernels import plan_fp32

    export_web(_model(1.0, 224, seed=0), folder / "full", kernel_plan=False)
    plain = onnx.load(folder / "full" / "model.onnx")
    models = {"no-plan": plain, "plan": plan_fp32(plain)[0], "plan-7x7": plan_fp32(plain, max_positions=49)[0]}
    model = onnx.shape_inference.infer_shapes(models["plan"])
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    nodes, seen = [], False
    for node in model.graph.node:  # up to the last op whose output is 56x56
        at56 = shapes.get(node.output[0], [0, 0, 0, 0])[2:] == [56, 56]
        if seen and not at56:
            break
        seen |= at56
        nodes.append(node)
    used = {n for node in nodes for n in node.input}
    graph = h.make_graph(nodes, "head", [h.make_tensor_value_info(model.graph.input[0].name, TensorProto.FLOAT, ["b", 3, "h", 224])],
                         [h.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["b", "c", "y", "x"])],
                         [t for t in model.graph.initializer if t.name in used])
    models["head"] = h.make_model(graph, opset_imports=model.opset_import)
    models["head"].ir_version = model.ir_version
    return models


def main(argv=None) -> int:
    p = ScriptParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="WASM thread counts (default 1,2)")
    p.add_argument("--layers", type=positive_int, default=4, help="layers in each timed chain (default 4)")
    p.add_argument("--rounds", type=positive_int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--runs", type=positive_int, default=10, help="inferences per page per round (default 10)")
    p.add_argument("--no-split", action="store_true", help="skip the whole-model timings (1.0-224: its plans, its two halves)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-web-forms-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        for name in RUNTIME:
            shutil.copyfile(runtime_folder() / name, site / name)
        (site / "forms.html").write_text(PAGE)
        for c, s in SHAPES:
            for form in FORMS:
                onnx.save(chain(form, c, s, args.layers), site / f"{form}-{c}x{s}.onnx")
                runs += [{"form": form, "shape": f"{c}x{s}", "model": f"{form}-{c}x{s}.onnx", "input": [1, c, s, s],
                          "per": args.layers, "threads": n} for n in threads]
        for c, s in DW_SHAPES:
            for form in DW_FORMS:
                onnx.save(depthwise_chain(form, c, s, args.layers), site / f"{form}-{c}x{s}.onnx")
                runs += [{"form": form, "shape": f"{c}x{s} dw", "model": f"{form}-{c}x{s}.onnx", "input": [1, c, s, s],
                          "per": args.layers, "threads": n} for n in threads]
        if not args.no_split:
            for name, model in whole_models(Path(tmp)).items():
                onnx.save(model, site / f"{name}.onnx")
            runs += [{"form": form, "shape": "1.0-224", "model": f"{form}.onnx", "input": [1, 3, 224, 224], "per": 1,
                      "threads": n} for form in ("plan", "plan-7x7", "no-plan") for n in threads]
            for form, shape in (("whole", [1, 3, 224, 224]), ("split", [2, 3, 120, 224])):
                runs += [{"form": form, "shape": "1.0-224 to 56x56", "model": "head.onnx", "input": shape, "per": 1,
                          "threads": n} for n in threads]
        with serve(site) as url, chromium() as browser:
            pages = open_pages(browser, url, runs, lambda r: f"forms.html?model={r['model']}&threads={r['threads']}"
                               f"&shape={json.dumps(r['input'])}")
            time_rounds(runs, pages, args.rounds, args.runs)
    summarize(runs, per=lambda r: r["per"])
    for r in runs:
        base = {"whole": "whole", "split": "whole", "plan-7x7": "plan", "no-plan": "plan"}.get(
            r["form"], "dw" if r["form"].startswith("dw") else r["form"] if r["form"] == "plan" else "conv")
        ref = next(q for q in runs if q["form"] == base and q["shape"] == r["shape"] and q["threads"] == r["threads"])
        r["ratio"] = r["median_ms"] / ref["median_ms"]
    ort_web = json.loads((runtime_folder().parent / "package.json").read_text())["version"]
    info = {"machine": machine_info(max(threads)), "chromium": chromium_version(), "onnxruntime_web": ort_web, "layers": args.layers,
            "rounds": args.rounds, "runs_per_round": args.runs, "results": runs}
    print(f"{info['machine'].get('cpu')}, {os.cpu_count()} cores; {info['chromium']}; ONNX Runtime Web {ort_web}")
    print(f"{'shape':18} {'form':15} {'threads':>7} {'ms/layer':>9} {'p10-p90':>13} {'ratio':>6}  (ratio: to conv, dw, whole or plan)")
    for r in sorted(runs, key=lambda r: (r["shape"], r["threads"])):
        print(f"{r['shape']:18} {r['form']:15} {r['threads']:7d} {r['median_ms']:9.3f} {r['p10_ms']:6.2f}-{r['p90_ms']:<6.2f} {r['ratio']:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
