"""face-api's SSD-MobileNetV1 face detector in the browser: our web export against face-api itself.

face-api (npm ``@vladmandic/face-api`` 1.7.15, the project's test install in tests/reference/face_api)
runs its SSD-MobileNetV1 face detector (the TF Object Detection API's architecture, 512 px) on
TensorFlow.js 4.22. ``mobilenet detect convert`` imports those weights and ``detect export --format
web`` writes a static folder that runs them on ONNX Runtime Web, box decoding and NMS inside the ONNX
graph. This script times both in the same headless Chromium (WASM SIMD; threads where the page is
cross-origin isolated), on the same real photo (insightface's t1, 640 x 480, six faces, by default):

- ``ours-fp32``: the web export (with its kernel plan for ONNX Runtime Web), ``detector.js``'s
  ``detect`` (the recorded pad to a square and TF's legacy resize in JavaScript, the ONNX model,
  the boxes back in the image's pixels);
- ``ours-fp32-unplanned``: the same export without the kernel plan (``kernel_plan=False``);
- ``face-api``: ``faceapi.detectAllFaces`` with ``SsdMobilenetv1Options`` on TF.js's WASM backend
  (face-api's ESM bundle; its page reports twice the threads asked as
  ``navigator.hardwareConcurrency``, because TF.js caps its thread pool at half the logical cores).

A timed run starts from the decoded RGBA pixels (``ImageData``, made once) and ends with the
detections at score >= ``--min-score`` as JavaScript objects. Before timing, each engine's detections
are compared with face-api's (count, and the largest box-corner difference in pixels). Int8 is not
timed: a converted detector's ``--int8`` needs a labelled data set of its classes to calibrate on and
score (``detect export --int8 --data``), and none ships with a package here.

    python benchmarks/bench_web_detect.py --threads 1,2 --rounds 8 --json out.json
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from _browser import open_pages, summarize, time_rounds
from _cli import ScriptParser, positive_int
from mobilenets.bench.run import machine_info
from mobilenets.deploy.web.browser import chromium, chromium_version, serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from face_api_export import MANIFEST, PACKAGE_DIR  # noqa: E402

TFJS_WASM = PACKAGE_DIR.parent.parent / "@tensorflow" / "tfjs-backend-wasm" / "dist"

PAGE = """<!doctype html><meta charset="utf-8"><title>detect bench</title>
<script>
// TF.js's WASM backend caps its threads at half of navigator.hardwareConcurrency: report twice the
// threads asked, so that it runs them (as benchmarks/bench_web.py's TF.js page does).
{ const q = new URLSearchParams(location.search);
  if (q.get('engine') === 'face-api') Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', { get: () => 2 * Number(q.get('threads')) }); }
</script>
<script type="module">
const q = new URLSearchParams(location.search);
const engine = q.get('engine'), threads = Number(q.get('threads')), minScore = Number(q.get('min_score'));
const bitmap = await createImageBitmap(await (await fetch(q.get('photo'))).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d', { willReadFrequently: true });
ctx.drawImage(bitmap, 0, 0);
const pixels = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
let run;
if (engine === 'face-api') {
  const faceapi = await import('./face-api/face-api.esm.js');
  const tf = faceapi.tf;
  tf.setWasmPaths(new URL('./face-api/', location.href).href);
  tf.setThreadsCount(threads);
  await tf.setBackend('wasm');
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromUri('./face-api/model');
  const options = new faceapi.SsdMobilenetv1Options({ minConfidence: minScore, maxResults: 100 });
  run = async () => {
    const x = tf.browser.fromPixels(pixels);
    const found = await faceapi.detectAllFaces(x, options);
    x.dispose();
    return found.map((d) => ({ box: [d.box.x, d.box.y, d.box.x + d.box.width, d.box.y + d.box.height], score: d.score }));
  };
  window.engineInfo = `face-api ${faceapi.version} on tfjs ${tf.version_core} ${tf.getBackend()} threads ${tf.getThreadsCount()}`;
} else {
  const m = await import(`./${q.get('dir')}/detector.js`);
  const detector = await m.load({ threads });
  run = async () => (await detector.detect(pixels, { minScore })).map((d) => ({ box: d.box, score: d.score }));
  const { ort } = await import(`./${q.get('dir')}/mobilenet.js`);  // the module detector.js runs on
  window.engineInfo = `onnxruntime-web ${ort.env.versions.web} wasm threads ${ort.env.wasm.numThreads}`;
}
const output = await run();
for (let i = 0; i < 3; i++) await run();  // warm-up
window.bench = {
  output,
  async time(n) { const t = []; for (let i = 0; i < n; i++) { const s = performance.now(); await run(); t.push(performance.now() - s); } return t; },
};
</script>"""


def build(site: Path, work: Path, photo: str) -> list[dict]:
    """The folders: our web exports (planned and not), face-api with its model and TF.js's WASM files."""
    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.detect.convert import convert_detector
    from mobilenets.tasks.detect.web import export_detector_web

    converted = convert_detector(MANIFEST, work / "face-ssd")
    export_detector_web(str(converted), site / "ours", check_images=4)
    export_detector_web(str(converted), site / "ours-unplanned", check_images=4, kernel_plan=False)
    (site / "face-api" / "model").mkdir(parents=True)
    shutil.copyfile(PACKAGE_DIR / "dist" / "face-api.esm.js", site / "face-api" / "face-api.esm.js")
    for f in TFJS_WASM.glob("*.wasm"):
        shutil.copyfile(f, site / "face-api" / f.name)
    for f in MANIFEST.parent.glob("ssd_mobilenetv1_model*"):
        shutil.copyfile(f, site / "face-api" / "model" / f.name)
    load_photo(photo).save(site / "photo.png")
    (site / "bench.html").write_text(PAGE)
    return [{"engine": "ours-fp32", "dir": "ours"}, {"engine": "ours-fp32-unplanned", "dir": "ours-unplanned"},
            {"engine": "face-api", "dir": "face-api"}]


def compare(found: list[dict], ref: list[dict]) -> dict:
    """Count of each, and the largest corner difference (px) between boxes paired by overlap."""
    out = {"count": len(found), "reference_count": len(ref)}
    if found and ref:
        a, b = np.array([d["box"] for d in found]), np.array([d["box"] for d in ref])
        out["max_box_diff_px"] = float(max(np.abs(b - x).max(1).min() for x in a))
    return out


def main(argv=None) -> int:
    p = ScriptParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="WASM thread counts (default 1,2)")
    p.add_argument("--rounds", type=positive_int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--runs", type=positive_int, default=5, help="detections per page per round (default 5)")
    p.add_argument("--photo", default="insightface_t1", help="a photo of mobilenets.data.photos (default insightface_t1)")
    p.add_argument("--min-score", type=float, default=0.5, help="detections kept from this score (default 0.5)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    if not MANIFEST.is_file():
        p.error("face-api is not installed: run `make test`'s set-up (npm ci in tests/reference/face_api)")
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-web-detect-") as tmp:
        site = Path(tmp) / "site"
        engines = build(site, Path(tmp), args.photo)
        runs = [dict(e, threads=n) for e in engines for n in threads]
        with serve(site) as url, chromium() as browser:
            pages = open_pages(browser, url, runs, lambda r: f"bench.html?engine={r['engine']}&dir={r['dir']}&threads="
                               f"{r['threads']}&photo=photo.png&min_score={args.min_score}", timeout_ms=180_000)
            ref = next(pg.evaluate("window.bench.output") for r, pg in zip(runs, pages) if r["engine"] == "face-api")
            for r, page in zip(runs, pages):
                r["against_face_api"] = compare(page.evaluate("window.bench.output"), ref)
            time_rounds(runs, pages, args.rounds, args.runs)
    summarize(runs)
    for r in runs:
        peer = next(q for q in runs if q["engine"] == "face-api" and q["threads"] == r["threads"])
        r["ratio_to_face_api"] = r["median_ms"] / peer["median_ms"]
    info = {"machine": machine_info(max(threads)), "chromium": chromium_version(), "photo": args.photo,
            "min_score": args.min_score, "rounds": args.rounds, "runs_per_round": args.runs, "results": runs}
    print(f"{info['machine'].get('cpu')}, {os.cpu_count()} cores; {info['chromium']}; photo {args.photo}")
    for r in runs:
        print(f"  {r['engine']} {r['threads']}: {r['engine_info']}")
    print(f"{'engine':20} {'threads':>7} {'median ms':>10} {'p10-p90 ms':>15} {'x face-api':>10}  detections (face-api's), max box diff px")
    for r in runs:
        c = r["against_face_api"]
        print(f"{r['engine']:20} {r['threads']:7d} {r['median_ms']:10.1f} {r['p10_ms']:7.1f}-{r['p90_ms']:<7.1f} "
              f"{r['ratio_to_face_api']:10.2f}  {c['count']} ({c['reference_count']}), {c.get('max_box_diff_px', float('nan')):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
