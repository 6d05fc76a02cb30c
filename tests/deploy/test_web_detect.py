"""`detect export --format web` in a real browser (the machinery of test_web.py: Debian's Chromium,
headless, Playwright, the folder served from 127.0.0.1).

Checked against the Python side: the page's input (detector.js's preprocess) equals
``ssd_input``'s within 1e-6 (torch's antialiased resize of the float image; measured 1.2e-7, one
float32 ulp: torch sums in another order somewhere), bit for bit for TF's legacy resize, and
``detect(image)`` gives the detections native ONNX Runtime gives on that input, mapped to the image's pixels as Python maps
them: the same labels in the same order, boxes within 0.01 px, scores within 1e-5. Negative
controls: TF's legacy resize instead of the recorded antialiased one, and BGR, give inputs more
than 1e-2 away from ssd_input's. The detector is a 1-step SSD 0.25-64 trained on the stand-in data
(what the detect tests use); its detections barely depend on the image, so there the detection
comparison proves the ONNX, the decoding and the box mapping, and the input check the resize; the
slow test on face-api's real face detector has negative controls on the detections themselves.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_web import browser_ready, page_of, write_photos  # noqa: F401  (page_of: a fixture)

BOX_PX = 0.01  # px in the image

RUN_JS = """async ([names, options]) => {
  const d = await import('./detector.js');
  const m = await import('./mobilenet.js');
  const model = await d.load(options);
  const out = [];
  for (const name of names) {
    const blob = await (await fetch(name)).blob();
    const px = await m.pixelsOf(blob);
    const input = Array.from(d.preprocess(px.data, px.width, px.height, model.detector).input);
    out.push({input, found: await model.detect(blob)});
  }
  return out;
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A 1-step SSD run exported by `mobilenet detect export --format web --force --json` into a
    folder that already holds a file; plus photos."""
    import contextlib
    import io

    browser_ready()
    from mobilenets.cli.main import main
    from mobilenets.tasks.detect.standin import write_standin

    root = tmp_path_factory.mktemp("webdetect")
    data = write_standin(root / "data", seed=5, train=4, val=3, size=64)
    assert main(["detect", "train", "--data", str(data), "--alpha", "0.25", "--resolution", "64", "--epochs", "1",
                 "--batch-size", "4", "--warmup-epochs", "0", "--output", str(root / "run"), "--no-progress",
                 "--eval-batch-size", "4"]) == 0
    folder = root / "site"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["detect", "export", "--checkpoint", str(root / "run"), "--format", "web", "--output",
                     str(folder), "--force", "--json"]) == 0
    return folder, json.loads(out.getvalue()), write_photos(folder), root / "run"


def reference(folder, names):
    """ssd_input's inputs, and native ONNX Runtime's detections in the image's pixels."""
    from PIL import Image

    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.export import run_onnx, session
    from mobilenets.tasks.detect.inputs import ssd_input

    cfg = DetectorConfig.from_dict(json.loads((folder / "model.onnx.json").read_text())["detector"])
    sess = session(folder / "model.onnx")
    out = []
    for name in names:
        x, (sx, sy) = ssd_input(Image.open(folder / name).convert("RGB"), cfg)
        det = run_onnx(sess, x.numpy())
        boxes = det["boxes"].astype(np.float64) * cfg.resolution * np.array([sx, sy, sx, sy])
        out.append((x.numpy(), boxes, det["scores"], det["labels"]))
    return out


def matches(found, ref) -> bool:
    """The same detections: equal scores (within 1e-6) ordered by box, as the export's own check
    orders them (int8 kernels give many exact ties, which two runtimes may list in either order)."""
    from mobilenets.tasks.detect.export import tied_order

    _, boxes, scores, labels = ref
    if len(found) != len(scores):
        return False
    b = np.array([d["box"] for d in found]).reshape(-1, 4)
    s = np.array([d["score"] for d in found], dtype=np.float32)
    mine, theirs = tied_order(s, b), tied_order(scores, boxes)
    return bool(np.abs(b[mine] - boxes[theirs]).max(initial=0) <= BOX_PX
                and np.abs(s[mine] - scores[theirs]).max(initial=0) <= 1e-5
                and np.array_equal(np.array([d["index"] for d in found])[mine], labels[theirs]))


@pytest.mark.slow  # the 1-step training and the checked export: ~20 s on 2 cores
def test_folder_and_report(site):
    from mobilenets.deploy.web import DETECTOR_STATIC_FILES, RUNTIME_FILES

    folder, report, _, _ = site
    assert (folder / "notes.txt").read_text() == "mine"
    for name in ("model.onnx", "model.onnx.json", *RUNTIME_FILES, *DETECTOR_STATIC_FILES.values()):
        assert (folder / name).is_file(), name
    assert "detector.js" in (folder / "index.html").read_text() or "demo.js" in (folder / "index.html").read_text()
    assert report["files"][0]["ok"] and "same detections" in report["files"][0]["check"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # the 1-step training and the checked export: ~20 s on 2 cores
def test_page_detections_equal_onnx_runtime_and_wrong_input_handling_fails(site, page_of):  # noqa: F811
    folder, _, files, _ = site
    ref = reference(folder, files)
    assert all(len(r[2]) > 0 for r in ref)
    page = page_of(folder)
    out = page.evaluate(RUN_JS, [files, {}])
    for row, r in zip(out, ref):
        x = np.array(row["input"], dtype=np.float32).reshape(r[0].shape)
        assert np.abs(x - r[0]).max() <= 1e-6, np.abs(x - r[0]).max()  # measured 1.2e-7: one float32 ulp
        assert matches(row["found"], r), (len(row["found"]), len(r[2]))
        assert max(v for d in row["found"] for v in d["box"]) > 2  # image pixels, not normalised
    # negative controls: TF's legacy resize instead of the recorded antialiased one, and BGR, give
    # inputs far from ssd_input's (the 1-step detector's detections barely depend on its input,
    # so the control is on the input the page feeds the model)
    for wrong in ({"input_resize": "tf_legacy"}, {"color": "BGR"}):
        bad = page.evaluate(RUN_JS, [files, {"detector": wrong}])
        for row, r in zip(bad, ref):
            assert np.abs(np.array(row["input"], dtype=np.float32).reshape(r[0].shape) - r[0]).max() > 1e-2, wrong
    assert not page.errors, page.errors


@pytest.mark.slow  # the 1-step training and the checked export: ~20 s on 2 cores
def test_demo_page_draws_boxes_and_one_line_for_a_non_image(site, page_of, tmp_path):  # noqa: F811
    folder, _, files, _ = site
    page = page_of(folder)
    page.fill("#score", "0")
    page.set_input_files("#file", str(folder / files[0]))
    page.wait_for_function("document.querySelectorAll('#found li').length > 0")
    assert "ms" in page.inner_text("#latency") and page.inner_text("#status") == files[0]
    (tmp_path / "notes.txt").write_text("not an image")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_function("document.querySelector('#status').className === 'error'")
    assert page.inner_text("#status") == "notes.txt is not an image (text/plain)"
    assert not page.errors, page.errors


@pytest.mark.slow  # the int8 export (calibration and AP50 check): ~20 s on 2 cores
def test_int8_page_equals_native_onnx_runtime(site, page_of, tmp_path):  # noqa: F811
    """--int8: model.onnx is the int8 file (its sidecar says so, with its kernel plan; the fp32 check
    is reported too), and the page's detections are native ONNX Runtime's on the same file."""
    from mobilenets.tasks.detect.web import export_detector_web

    _, _, files, run = site
    folder = tmp_path / "int8"
    report = export_detector_web(str(run), folder, int8=True)
    assert report["files"][0]["int8"] and [c.split(":")[0] for c in report["checks"]] == ["fp32", "int8"]
    sidecar = json.loads((folder / "model.onnx.json").read_text())
    assert sidecar["int8"] is True
    plan = sidecar["kernel_plan"]  # the depthwise convs (and more, at this size) run in float, exactly
    assert plan["float_convs"] >= 13 and plan["float_convs"] + plan["int8_convs"] > 27
    write_photos(folder)
    ref = reference(folder, files)
    out = page_of(folder).evaluate(RUN_JS, [files, {}])
    for row, r in zip(out, ref):
        assert matches(row["found"], r), (len(row["found"]), len(r[2]))


@pytest.mark.parametrize("argv, message", [
    (["--format", "web", "--formats", "onnx"], "--formats applies to the file export"),
    (["--force"], "--force applies to --format web"),
])
def test_cli_flag_errors(argv, message, capsys, tmp_path):
    from mobilenets.cli.main import main

    assert main(["detect", "export", "--checkpoint", str(tmp_path / "none"), "--output", str(tmp_path / "x"),
                 *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_non_empty_folder_refused_without_force(tmp_path):
    from mobilenets.errors import MobileNetsError
    from mobilenets.tasks.detect.web import export_detector_web

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("mine")
    with pytest.raises(MobileNetsError, match="not empty; pass --force"):
        export_detector_web(str(tmp_path / "none"), tmp_path / "site")
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["index.html"]


@pytest.mark.slow  # the conversion and the checked export at 512 px: ~35 s on 2 cores
def test_real_face_detector_in_the_browser(page_of, tmp_path):  # noqa: F811
    """face-api's SSD-MobileNetV1 face detector (converted by `detect convert` from the project's npm
    install): its recorded input handling (bottom/right zero pad to a square, TF's legacy resize,
    boxes back through face-api's rounded scale) in detector.js gives native ONNX Runtime's
    detections on real face photos (boxes within 0.01 px, scores within 1e-5); the antialiased
    resize, or no padding, changes them (negative controls on the detections themselves)."""
    from face_api_export import MANIFEST
    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.detect.convert import convert_detector
    from mobilenets.tasks.detect.web import export_detector_web

    browser_ready()
    if not MANIFEST.is_file():
        pytest.skip("face-api is not installed: run the Makefile set-up (npm ci in tests/reference/face_api)")
    converted = convert_detector(MANIFEST, tmp_path / "face-ssd")
    folder = tmp_path / "site"
    export_detector_web(str(converted), folder, check_images=4)
    files = []
    for name in ("insightface_t1", "astronaut"):
        load_photo(name).save(folder / f"{name}.png")
        files.append(f"{name}.png")
    ref = reference(folder, files)
    assert sum(int((r[2] > 0.5).sum()) for r in ref) >= 7  # six faces and one
    page = page_of(folder)
    out = page.evaluate(RUN_JS, [files, {}])
    for row, r in zip(out, ref):
        assert np.array_equal(np.array(row["input"], dtype=np.float32).reshape(r[0].shape), r[0])
        assert matches(row["found"], r), (len(row["found"]), len(r[2]))
    # on t1 (not square, not 512 px; astronaut is 512 x 512: neither pad nor resize applies)
    for wrong in ({"input_resize": "antialias"}, {"input_pad": "none"}):
        bad = page.evaluate(RUN_JS, [files[:1], {"detector": wrong}])
        assert not matches(bad[0]["found"], ref[0]), wrong
    assert not page.errors, page.errors
