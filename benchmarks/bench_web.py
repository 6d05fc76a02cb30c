"""Browser latency of the web export against TensorFlow.js, in the same headless Chromium.

For each model (``--models``, default 1.0-224 and 0.25-128: Keras-compatible MobileNets, ReLU6
and TF SAME padding, seeded random weights with BatchNorm statistics drawn so that the outputs are
not constant) the script writes, into one folder served from 127.0.0.1 with COOP/COEP (so
WebAssembly threads work):

- ``ours-fp32`` / ``ours-int8``: ``export_web`` (the ONNX export with its kernel plan for ONNX
  Runtime Web, :mod:`mobilenets.deploy.web.kernels`; int8 calibrated on 64 crops of real photos,
  ``int8_method="plain"`` so that both int8 files hold the same integers), run by the folder's own
  ``mobilenet.js`` (ONNX Runtime Web, WASM SIMD);
- ``ours-fp32-unplanned`` / ``ours-int8-unplanned``: the same exports without the kernel plan
  (``kernel_plan=False``: the files ``mobilenet export --format onnx`` writes), to measure the plan;
- ``tfjs``: the same weights as a Keras model (:func:`mobilenets.weights.convert.to_keras`), saved
  as a SavedModel and converted by the ``tensorflowjs`` converter (PyPI ``tensorflowjs`` 4.22,
  installed ``--no-deps``: its pins are stale; it imports jax, tensorflow_hub and
  tensorflow_decision_forests only for their own model kinds, so those imports are stubbed here) to
  a TF.js graph model, run by TF.js 4.22's WASM backend (SIMD; threads where isolated: its page
  reports twice the threads asked as ``navigator.hardwareConcurrency``, because TF.js caps its
  thread pool at half the logical cores and would run one thread on a 2-core machine). TF.js has no
  int8 kernels (its converter's weight quantization only shrinks the file): both our fp32 and
  our int8 are compared with TF.js float32.

Before timing, each engine's logits on one input are compared with ours-fp32 (TF.js and the
unplanned fp32: the same weights must give the same outputs) or, for int8, with the unplanned int8
file (the plan keeps the int8 model's values up to ties of rounding). Every (model, engine, threads) runs in its own page (both
runtimes fix their thread count when their WASM module starts); the pages are loaded once, then
timed in interleaved rounds (``--rounds``, each ``--runs`` inferences at batch 1 after warm-up; a
timed run starts from the input as a Float32Array in the model's layout, which both engines copy
into their WebAssembly memory, and ends with the logits in JavaScript),
and each configuration's median per-inference time over all runs is reported with its p10-p90
spread and its ratio to TF.js at the same threads. ``--screenshot PATH`` also saves the demo page
of the real ImageNet MobileNetV1's web export (the ``nudity`` package's, converted) with chelsea's
top-5 (``--screenshot-only``: only that).

    python benchmarks/bench_web.py --rounds 10 --threads 1,2 --json out.json
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from _browser import open_pages, summarize, time_rounds
from _cli import ScriptParser, positive_int
from mobilenets.bench.run import machine_info
from mobilenets.deploy.web import export_web
from mobilenets.deploy.web.browser import chromium, chromium_version, serve
from mobilenets.deploy.web.export import runtime_folder
from mobilenets.models.mobilenet import MobileNet, MobileNetConfig

TFJS_FILES = {"@tensorflow/tfjs/dist": ["tf.min.js"],
              "@tensorflow/tfjs-backend-wasm/dist": ["tf-backend-wasm.min.js", "tfjs-backend-wasm.wasm",
                                                     "tfjs-backend-wasm-simd.wasm",
                                                     "tfjs-backend-wasm-threaded-simd.wasm"]}

BENCH_HTML = """<!doctype html><meta charset="utf-8"><title>bench</title>
<script>
// TF.js's WASM backend caps its XNNPACK threads at half of navigator.hardwareConcurrency (it takes
// every other logical core for a hyper-thread), so on a 2-core machine it runs one thread whatever
// setThreadsCount asks. Its page reports twice the threads asked, so the cap allows them.
{ const q = new URLSearchParams(location.search);
  if (q.get('engine') === 'tfjs') Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', { get: () => 2 * Number(q.get('threads')) }); }
</script>
<script src="tfjs/tf.min.js"></script><script src="tfjs/tf-backend-wasm.min.js"></script>
<script type="module">
const q = new URLSearchParams(location.search);
const engine = q.get('engine'), dir = q.get('dir'), threads = Number(q.get('threads')), size = Number(q.get('size'));
let run, output;
const input = new Float32Array(3 * size * size);
for (let i = 0; i < input.length; i++) input[i] = Math.sin(i * 0.37) * 1.5;  // the same input for every engine (NCHW)
if (engine === 'tfjs') {
  tf.wasm.setWasmPaths(new URL('tfjs/', location.href).href);
  tf.wasm.setThreadsCount(threads);
  await tf.setBackend('wasm');
  const model = await tf.loadGraphModel(dir + '/model.json');
  // the input in the model's layout (NHWC) as an array, handed in each run as ONNX Runtime gets its
  // NCHW array: both engines copy it into their WebAssembly memory inside the timed run
  const t = tf.tidy(() => tf.tensor(input, [1, 3, size, size]).transpose([0, 2, 3, 1]));
  const nhwc = await t.data(); t.dispose();
  run = async () => {
    const x = tf.tensor(nhwc, [1, size, size, 3]), y = model.execute(x);
    const d = await y.data(); x.dispose(); y.dispose(); return d;
  };
  window.engineInfo = `tfjs ${tf.version.tfjs} ${tf.getBackend()} threads ${tf.wasm.getThreadsCount()} simd ${await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')}`;
} else {
  const m = await import(`./${dir}/mobilenet.js`);
  const model = await m.load({ threads });
  run = () => model.logits(input);
  window.engineInfo = `onnxruntime-web ${m.ort.env.versions.web} wasm threads ${m.ort.env.wasm.numThreads}`;
}
output = Array.from(await run());
for (let i = 0; i < 5; i++) await run();  // warm-up
window.bench = {
  output,
  async time(n) { const t = []; for (let i = 0; i < n; i++) { const s = performance.now(); await run(); t.push(performance.now() - s); } return t; },
};
</script>"""


def _tensorflowjs():
    # tensorflowjs 4.22 imports these at start-up for their own model kinds only (JAX functions, TF
    # Hub modules, decision forests): none is installed beside TF 2.21, none is used for a SavedModel.
    # The stubs are removed again at once, and Keras is imported before them: it looks for a real jax.
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    stubs = [n for n in ("tensorflow_decision_forests", "tensorflow_hub", "jax", "jax.experimental",
                         "jax.experimental.jax2tf") if n not in sys.modules]
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
    sys.modules["jax.experimental"].jax2tf = sys.modules["jax.experimental.jax2tf"]
    try:
        from tensorflowjs.converters import tf_saved_model_conversion_v2
    finally:
        for name in stubs:
            del sys.modules[name]
    return tf_saved_model_conversion_v2


def _model(alpha: float, resolution: int, seed: int) -> MobileNet:
    torch.manual_seed(seed)
    model = MobileNet(MobileNetConfig(alpha=alpha, resolution=resolution, activation="relu6", padding="tf_same"))
    with torch.no_grad():  # BatchNorm statistics that keep the signal alive (random ones give constant outputs)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats(); m.momentum = None; m.train()  # noqa: E702
        model(torch.randn(8, 3, resolution, resolution))
    return model.eval()


def build(folder: Path, models: list[tuple[float, int]], calibration: Path, log=print) -> list[dict]:
    """Write every engine's folder for every model; the list of configurations."""
    modules = runtime_folder().parent.parent  # web/node_modules
    (folder / "tfjs").mkdir(parents=True)
    for sub, names in TFJS_FILES.items():
        for name in names:
            shutil.copyfile(modules / sub / name, folder / "tfjs" / name)
    (folder / "bench.html").write_text(BENCH_HTML)
    configs, built = [], []
    for alpha, res in models:  # the ONNX exports first: TensorFlow imported before them crashes torch.onnx here
        tag = f"{alpha:.2f}".rstrip("0").rstrip(".") if alpha != int(alpha) else f"{alpha:.1f}"
        tag = f"{tag}-{res}"
        model = _model(alpha, res, seed=0)
        t = time.time()
        for plan, suffix in ((True, ""), (False, "-unplanned")):
            export_web(model, folder / f"{tag}-fp32{suffix}", kernel_plan=plan)
            export_web(model, folder / f"{tag}-int8{suffix}", int8=True, calibration=calibration, calibration_images=64,
                       int8_method="plain", kernel_plan=plan)
        log(f"{tag}: web exports in {time.time() - t:.0f} s")
        built.append((tag, model))
        for engine, sub in (("ours-fp32", "fp32"), ("ours-int8", "int8"), ("ours-fp32-unplanned", "fp32-unplanned"),
                            ("ours-int8-unplanned", "int8-unplanned"), ("tfjs", "tfjs")):
            configs.append({"model": tag, "size": res, "engine": engine, "dir": f"{tag}-{sub}"})
    convert = _tensorflowjs()
    from mobilenets.weights.convert import to_keras

    for tag, model in built:
        with tempfile.TemporaryDirectory() as tmp:
            to_keras(model).export(os.path.join(tmp, "saved"), verbose=False)
            convert.convert_tf_saved_model(os.path.join(tmp, "saved"), str(folder / f"{tag}-tfjs"))
    return configs


def screenshot(path: str) -> None:
    """The demo page of the real MobileNetV1's web export after picking chelsea.png, saved as ``path``."""
    from _models import real_mobilenet_graph
    from mobilenets.data.photos import load_photo
    from mobilenets.weights.checkpoint import save_model
    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    with tempfile.TemporaryDirectory(prefix="web-shot-") as tmp:
        save_model(from_tf_frozen(real_mobilenet_graph()), Path(tmp) / "model")  # a model folder: with class names
        export_web(str(Path(tmp) / "model"), Path(tmp) / "site")
        load_photo("chelsea").save(Path(tmp) / "chelsea.png")
        with serve(Path(tmp) / "site") as url, chromium() as browser:
            page = browser.new_page()
            page.set_viewport_size({"width": 760, "height": 470})
            page.goto(f"{url}index.html")
            page.wait_for_function("window.mobilenetReady === true", timeout=60_000)
            page.set_input_files("#file", str(Path(tmp) / "chelsea.png"))
            page.wait_for_function("document.querySelectorAll('#top li').length === 5")
            page.screenshot(path=path)


def jpeg_check(quality: int = 92) -> dict:
    """How far the browser's JPEG decoder is from Pillow's: skimage's chelsea and coffee saved as JPEG,
    decoded by the page (``pixelsOf``: createImageBitmap, no colour conversion) and by Pillow: the
    share of differing RGB values and the largest difference."""
    from mobilenets.data.photos import load_photo

    out = {}
    with tempfile.TemporaryDirectory(prefix="web-jpeg-") as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        from importlib import resources

        (site / "mobilenet.js").write_bytes((resources.files("mobilenets.deploy.web") / "static" / "mobilenet.js").read_bytes())
        for f in ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"):
            shutil.copyfile(runtime_folder() / f, site / f)
        (site / "index.html").write_text("<!doctype html><meta charset=utf-8>")
        from PIL import Image
        names = []
        for photo in ("chelsea", "coffee"):
            load_photo(photo).save(site / f"{photo}.jpg", quality=quality)
            names.append(f"{photo}.jpg")
        with serve(site) as url, chromium() as browser:
            page = browser.new_page()
            page.goto(url + "index.html")
            for name in names:
                px = page.evaluate("""async (name) => {
                  const m = await import('./mobilenet.js');
                  const p = await m.pixelsOf(await (await fetch(name)).blob());
                  return {w: p.width, h: p.height, data: Array.from(p.data)};
                }""", name)
                browser_rgb = np.array(px["data"], dtype=np.int16).reshape(px["h"], px["w"], 4)[..., :3]
                pil_rgb = np.asarray(Image.open(site / name).convert("RGB"), dtype=np.int16)
                diff = np.abs(browser_rgb - pil_rgb)
                out[name] = {"values_differing": float((diff > 0).mean()), "max_abs_diff": int(diff.max())}
    return out


def main(argv=None) -> int:
    p = ScriptParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="1.0-224,0.25-128", help="ALPHA-RESOLUTION list (default 1.0-224,0.25-128)")
    p.add_argument("--threads", default="1,2", help="WASM thread counts (default 1,2)")
    p.add_argument("--rounds", type=positive_int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--runs", type=positive_int, default=10, help="inferences per page per round (default 10)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--screenshot", metavar="PNG", help="save the demo page with chelsea's top-5 (real MobileNetV1)")
    p.add_argument("--screenshot-only", action="store_true", help="only --screenshot, no timing")
    p.add_argument("--jpeg-check", action="store_true", help="only compare the browser's JPEG decoding with Pillow's")
    args = p.parse_args(argv)
    if args.jpeg_check:
        print(json.dumps(jpeg_check(), indent=2))
        return 0
    models = [(float(a), int(r)) for a, r in (m.split("-") for m in args.models.split(","))]
    threads = [int(t) for t in args.threads.split(",")]
    from mobilenets.data.photos import split_photos, write_crops

    if args.screenshot:
        screenshot(args.screenshot)
        if args.screenshot_only:
            return 0
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp) / "site"
        write_crops(Path(tmp) / "calibration", 64, photos=split_photos()[0], seed=1)
        configs = build(root, models, Path(tmp) / "calibration")
        runs = [dict(c, threads=n) for c in configs for n in threads]
        with serve(root) as url, chromium() as browser:
            pages = open_pages(browser, url, runs, lambda r: f"bench.html?engine={'tfjs' if r['engine'] == 'tfjs' else 'ort'}"
                               f"&dir={r['dir']}&threads={r['threads']}&size={r['size']}")
            # the same weights give the same outputs: each float engine against ours-fp32, each int8
            # file against the unplanned int8 file (the plan keeps its values up to rounding ties)
            for r, page in zip(runs, pages):
                against = "ours-int8-unplanned" if "int8" in r["engine"] else "ours-fp32"
                ref = next(np.array(pg.evaluate("window.bench.output")) for q, pg in zip(runs, pages)
                           if q["model"] == r["model"] and q["engine"] == against)
                out = np.array(page.evaluate("window.bench.output"))
                r["checked_against"] = against
                r["max_abs_diff"] = float(np.abs(out - ref).max())
                r["top1_same"] = bool(out.argmax() == ref.argmax())
            time_rounds(runs, pages, args.rounds, args.runs)
    for r in runs:
        r["samples"] = len(r["times"])
    summarize(runs)
    for r in runs:
        peer = next(q for q in runs if q["model"] == r["model"] and q["engine"] == "tfjs" and q["threads"] == r["threads"])
        r["ratio_to_tfjs"] = r["median_ms"] / peer["median_ms"]
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    simd = [f for f in ("sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    info = {"machine": {**machine_info(max(threads)), "cpu_flags": simd}, "chromium": chromium_version(), "rounds": args.rounds,
            "runs_per_round": args.runs, "results": runs}
    print(f"{info['machine'].get('cpu')} ({' '.join(simd)}), {os.cpu_count()} cores; {info['chromium']}")
    print(f"{'model':9} {'engine':20} {'threads':>7} {'median ms':>10} {'p10-p90 ms':>15} {'x TF.js':>8}  same input as")
    for r in runs:
        print(f"  {r['model']} {r['engine']} {r['threads']}: {r['engine_info']}")
    for r in runs:
        print(f"{r['model']:9} {r['engine']:20} {r['threads']:7d} {r['median_ms']:10.2f} "
              f"{r['p10_ms']:7.2f}-{r['p90_ms']:<7.2f} {r['ratio_to_tfjs']:8.2f}  "
              f"{r['checked_against']}: max abs {r['max_abs_diff']:.2e}, top-1 same: {r['top1_same']}")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
