"""The web export in a real browser: Debian's Chromium, headless, driven by Playwright, the folder
served from 127.0.0.1 by the test (COOP/COEP, so WebAssembly threads work).

What is checked against the Python side: the page's preprocessed input equals the eager pipeline's
(torchvision on PIL) bit for bit, its logits are within the export's fp32 tolerance (1e-4 per unit
of the largest logit) and its top-5 are the same; a deliberately wrong preprocessing (BGR, no
mean/std) fails that same comparison (the negative control). The default tests use a small model
with non-trivial BatchNorm; the real ImageNet MobileNetV1 (fp32 and int8) is in the slow tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilenets.errors import MobileNetsError

PHOTOS = ("chelsea", "coffee")  # skimage's cat and coffee cup, written as PNG (lossless: no decoder differences)

# Runs in the page: load mobilenet.js's model (with `options`), and for each image file: the
# preprocessed input, the logits and the top-5 that classify() gives.
RUN_JS = """async ([names, options, withInput]) => {
  const m = await import('./mobilenet.js');
  const model = await m.load(options);
  const out = [];
  for (const name of names) {
    const blob = await (await fetch(name)).blob();
    const px = await m.pixelsOf(blob);
    const input = withInput ? Array.from(m.preprocess(px.data, px.width, px.height, model.preprocessing)) : null;
    const r = await model.classify(blob);
    out.push({input, logits: Array.from(r.logits), top: r.top.map((t) => t.index), labels: r.top.map((t) => t.label)});
  }
  return out;
}"""


def browser_ready():
    from mobilenets.deploy.web import runtime_folder
    from mobilenets.deploy.web.browser import chromium_path

    try:
        runtime_folder()
        chromium_path()
        import playwright  # noqa: F401
    except (MobileNetsError, ImportError) as exc:
        pytest.skip(f"no browser set-up (make test installs it): {exc}")


def eager_reference(model, folder, names, sidecar):
    """The eager model on the image files as Python predicts them: inputs [N, 3, R, R] and logits."""
    from mobilenets.data.augment import Augment
    from mobilenets.data.transforms import eval_transform
    from mobilenets.infer.images import open_rgb

    pre = sidecar["preprocessing"]
    augment = Augment(mean=tuple(pre["mean"]), std=tuple(pre["std"]), eval_crop=pre["crop_pct"],
                      interpolation=pre["interpolation"])
    transform = eval_transform(pre["input_size"][1], augment)
    x = torch.stack([transform(open_rgb(folder / n)) for n in names])
    with torch.no_grad():
        return x.numpy(), model(x).numpy()


def matches(logits: np.ndarray, ref: np.ndarray) -> bool:
    """The acceptance comparison: logits within the export's fp32 tolerance, and the same top-5."""
    tolerance = 1e-4 * max(1.0, float(np.abs(ref).max()))
    same_top = list(np.argsort(-logits)[:5]) == list(np.argsort(-ref)[:5])
    return bool(np.abs(logits - ref).max() <= tolerance and same_top)


def write_photos(folder, names=PHOTOS):
    from mobilenets.data.photos import load_photo

    files = []
    for name in names:
        load_photo(name).save(folder / f"{name}.png")
        files.append(f"{name}.png")
    return files


@pytest.fixture(scope="module")
def small_web(tmp_path_factory, randomized_bn):
    """A small MobileNet (0.25, 64 px, 10 classes, BatchNorm and classifier randomised so outputs
    depend on the image), saved as a model folder and exported by `mobilenet export --format web
    --force --json` into a folder that already holds a file; plus the photos."""
    import contextlib
    import io
    import json

    browser_ready()
    from mobilenets.cli import main
    from mobilenets.models.mobilenet import MobileNet, MobileNetConfig
    from mobilenets.weights.checkpoint import save_model

    torch.manual_seed(0)
    model = randomized_bn(MobileNet(MobileNetConfig(alpha=0.25, resolution=64, num_classes=10)), classifier_std=0.5)
    root = tmp_path_factory.mktemp("web")
    save_model(model, root / "model")
    folder = root / "site"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", "--checkpoint", str(root / "model"), "--format", "web", "--output", str(folder),
                     "--force", "--json"]) == 0
    return model, folder, json.loads(out.getvalue()), write_photos(folder)


@pytest.fixture(scope="module")
def page_of():
    """``page_of(folder)``: a fresh page of one headless Chromium, the folder served from 127.0.0.1."""
    import contextlib

    from mobilenets.deploy.web.browser import chromium, serve

    with contextlib.ExitStack() as stack:
        browser = stack.enter_context(chromium())

        def open_page(folder):
            url = stack.enter_context(serve(folder))
            page = browser.new_page()
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and page.errors.append(msg.text))
            page.goto(url + "index.html")
            page.wait_for_function("window.mobilenetReady === true", timeout=60_000)
            return page

        yield open_page


def test_export_folder_keeps_other_files_and_records_the_check(small_web):
    _, folder, report, _ = small_web
    from mobilenets.deploy.web import RUNTIME_FILES, STATIC_FILES

    assert (folder / "notes.txt").read_text() == "mine"  # --force replaces only the export's own files
    for name in ("model.onnx", "model.onnx.json", *RUNTIME_FILES, *STATIC_FILES):
        assert (folder / name).is_file(), name
    assert report["format"] == "onnx" and report["check"]["passed"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_browser_equals_eager_and_wrong_preprocessing_fails(small_web, page_of):
    """The page's input is the eager pipeline's bit for bit; logits within 1e-4 and the same top-5.
    Negative controls: the same comparison fails with the channels swapped and with no mean/std."""
    import json

    model, folder, _, files = small_web
    sidecar = json.loads((folder / "model.onnx.json").read_text())
    x, ref = eager_reference(model, folder, files, sidecar)
    assert np.abs(ref[0] - ref[1]).max() > 0.5  # the outputs depend on the image, far beyond the tolerance
    page = page_of(folder)
    assert page.evaluate("self.crossOriginIsolated")
    out = page.evaluate(RUN_JS, [files, {}, True])
    for i, row in enumerate(out):
        assert np.array_equal(np.array(row["input"], dtype=np.float32).reshape(x[i].shape), x[i])
        logits = np.array(row["logits"], dtype=np.float32)
        assert matches(logits, ref[i]), (np.abs(logits - ref[i]).max(), row["top"])
        assert row["top"] == list(np.argsort(-ref[i])[:5])
    for wrong in ({"color": "BGR"}, {"mean": [0, 0, 0], "std": [1, 1, 1]}):
        bad = page.evaluate(RUN_JS, [files, {"preprocessing": wrong}, False])
        assert not any(matches(np.array(r["logits"], dtype=np.float32), ref[i]) for i, r in enumerate(bad)), wrong
    # several WebAssembly threads (the page is cross-origin isolated): the same logits
    threaded = page.evaluate(RUN_JS, [files[:1], {"threads": 2}, False])
    assert matches(np.array(threaded[0]["logits"], dtype=np.float32), ref[0])
    assert not page.errors, page.errors


def test_demo_page_shows_top5_and_one_line_for_a_non_image(small_web, page_of, tmp_path):
    _, folder, _, files = small_web
    page = page_of(folder)
    page.set_input_files("#file", str(folder / files[0]))
    page.wait_for_function("document.querySelectorAll('#top li').length === 5")
    assert "ms" in page.inner_text("#latency") and page.inner_text("#status") == files[0]
    (tmp_path / "notes.txt").write_text("not an image")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_function("document.querySelector('#status').className === 'error'")
    assert page.inner_text("#status") == "notes.txt is not an image (text/plain)"
    # a file that says it is a PNG but is not one, dropped on the page
    page.evaluate("""() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['garbage'], 'broken.png', {type: 'image/png'}));
      document.querySelector('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('broken.png')")
    assert page.inner_text("#status") == "broken.png is not an image this browser can read"
    assert "\n" not in page.inner_text("#status") and not page.errors, page.errors


def test_non_empty_folder_refused_without_force(tmp_path):
    from mobilenets.deploy.web import export_web
    from mobilenets.models.mobilenet import MobileNetConfig

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("mine")
    with pytest.raises(MobileNetsError, match="not empty; pass --force"):
        export_web(MobileNetConfig(alpha=0.25, resolution=32), tmp_path / "site")
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["index.html"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(MobileNetsError, match="is a file"):
        export_web(MobileNetConfig(alpha=0.25, resolution=32), tmp_path / "file")


def test_missing_runtime_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from mobilenets.deploy.web import export_web
    from mobilenets.models.mobilenet import MobileNetConfig

    monkeypatch.setenv("MOBILENETS_WEB_MODULES", str(tmp_path / "none"))
    with pytest.raises(MobileNetsError, match="ONNX Runtime Web is not installed.*make web"):
        export_web(MobileNetConfig(alpha=0.25, resolution=32), tmp_path / "site")
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("argv, message", [
    (["--format", "web", "--output", "x.onnx"], "--format web writes a folder"),
    (["--force", "--output", "x.onnx"], "--force applies to --format web"),
    (["--format", "torchscript", "--int8", "--output", "x.pt"], "--int8 is not offered for torchscript"),
])
def test_cli_flag_errors(argv, message, capsys, tmp_path, monkeypatch):
    from mobilenets.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", "mobilenet_v1_0.25_128", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# Runs in the page: a session of the folder's model.onnx with ONNX Runtime's profiler on, one run
# on a zero input of `size` px, and the op type of every node it ran (from the profile, which ORT
# Web prints to the console as JSON lines).
PROFILE_JS = """async (size) => {
  const ort = await import('./ort.wasm.min.mjs');
  const s = await ort.InferenceSession.create('model.onnx', {executionProviders: ['wasm'], graphOptimizationLevel: 'all',
                                                             enableProfiling: true});
  await s.run({[s.inputNames[0]]: new ort.Tensor('float32', new Float32Array(3 * size * size), [1, 3, size, size])});
  s.endProfiling();
}"""


def browser_ops(page, size):
    """The op types ONNX Runtime Web ran for the page's folder (one run), counted."""
    import json
    from collections import Counter

    lines = []
    page.on("console", lambda msg: lines.append(msg.text))
    page.evaluate(PROFILE_JS, size)
    page.wait_for_timeout(200)
    ops = Counter()
    for line in lines:
        line = line.strip().rstrip(",")
        if line.startswith("{") and '"cat" : "Node"' in line and "_kernel_time" in line:
            ops[json.loads(line)["args"]["op_name"]] += 1
    return ops


def test_kernel_plans_in_the_browser(small_web, page_of, tmp_path):
    """Planned files (thresholds lowered so that this small model's convs split) in ONNX Runtime
    Web: fp32 with its pointwise convs as Gemms gives eager's logits within 1e-4; int8 with half
    of its pointwise convs int8 runs exactly those as QLinearConv in the browser (its profiler's
    op names) and every other conv in float, and gives native ONNX Runtime's logits on the same
    file within the fp32 tolerance. The unplanned int8 file runs all 27 convs as QLinearConv."""
    import json

    import onnx

    from mobilenets.data.photos import write_crops
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.deploy.web import export_web
    from mobilenets.deploy.web.kernels import plan_fp32, plan_int8

    model, _, _, _ = small_web
    fp32 = tmp_path / "fp32"
    export_web(model, fp32, kernel_plan=False)
    planned, summary = plan_fp32(onnx.load(str(fp32 / "model.onnx")), max_positions=64, min_macs=0)
    onnx.save(planned, str(fp32 / "model.onnx"))
    files = write_photos(fp32)
    sidecar = json.loads((fp32 / "model.onnx.json").read_text())
    _, ref = eager_reference(model, fp32, files, sidecar)
    page = page_of(fp32)
    out = page.evaluate(RUN_JS, [files, {}, False])
    assert all(matches(np.array(r["logits"], dtype=np.float32), ref[i]) for i, r in enumerate(out))
    ops = browser_ops(page, 64)
    assert summary["gemm_convs"] == 10 and ops["Gemm"] + ops["FusedGemm"] == 10 + 1, ops  # + the classifier

    int8 = tmp_path / "int8"
    write_crops(tmp_path / "calibration", 16, seed=1)
    export_web(model, int8, int8=True, calibration=tmp_path / "calibration", calibration_images=16,
               int8_method="plain", kernel_plan=False)
    page = page_of(int8)
    assert browser_ops(page, 64)["QLinearConv"] == 27  # as exported: everything int8, depthwise too
    original = onnx.load(str(int8 / "model.onnx"))
    _, everything = plan_int8(original, min_macs=0)
    pointwise = sorted(c["macs"] for c in everything["convs"]["int8"])
    planned, summary = plan_int8(onnx.load(str(int8 / "model.onnx")), min_macs=pointwise[len(pointwise) // 2])
    onnx.save(planned, str(int8 / "model.onnx"))
    files = write_photos(int8)
    page = page_of(int8)
    ops = browser_ops(page, 64)
    assert 0 < summary["int8_convs"] == ops["QLinearConv"] < 13, ops
    assert ops["Conv"] + ops["FusedConv"] == summary["float_convs"], ops
    x, _ = eager_reference(model, int8, files, json.loads((int8 / "model.onnx.json").read_text()))
    native = load_runner(str(int8 / "model.onnx"), threads=1)(x)
    browser = np.array([r["logits"] for r in page.evaluate(RUN_JS, [files, {}, False])], dtype=np.float32)
    assert np.abs(browser - native).max() <= 1e-4 * max(1.0, float(np.abs(native).max()))
    assert not page.errors, page.errors


# --------------------------------------------------------------------------- the real MobileNetV1


@pytest.mark.slow
def test_real_mobilenet_fp32_in_the_browser(real_mobilenet, page_of, tmp_path):
    """The real ImageNet MobileNetV1 1.0-224: the page's top-5 on chelsea and coffee are eager's,
    its logits within 1e-4 per unit of the largest logit; the BGR negative control fails."""
    import json

    from mobilenets.deploy.web import export_web
    from mobilenets.weights.checkpoint import load_model

    browser_ready()
    folder = tmp_path / "site"
    export_web(str(real_mobilenet), folder)
    files = write_photos(folder)
    sidecar = json.loads((folder / "model.onnx.json").read_text())
    _, ref = eager_reference(load_model(real_mobilenet).eval(), folder, files, sidecar)
    page = page_of(folder)
    out = page.evaluate(RUN_JS, [files, {}, False])
    for i, row in enumerate(out):
        assert matches(np.array(row["logits"], dtype=np.float32), ref[i])
        assert row["top"] == list(np.argsort(-ref[i])[:5])
    assert "tabby" in " ".join(out[0]["labels"][:3]).lower() or "cat" in " ".join(out[0]["labels"][:3]).lower()
    bad = page.evaluate(RUN_JS, [files, {"preprocessing": {"color": "BGR"}}, False])
    assert not any(matches(np.array(r["logits"], dtype=np.float32), ref[i]) for i, r in enumerate(bad))


@pytest.mark.slow
def test_real_mobilenet_int8_in_the_browser(real_mobilenet, page_of, tmp_path):
    """The real MobileNetV1's int8 web export (calibrated on crops of some photos): on chelsea, coffee
    and 32 crops of other photos the page's int8 logits equal native ONNX Runtime's on the same file
    (fp32 tolerance: measured 3.8e-6 max abs with the kernel plan, 2.4e-6 without), so its top-1
    agreement with the eager float model is the one Python measures (measured on a Xeon with AVX-512
    VNNI: 28 of 34 with learned rounding, with or without the kernel plan: the same top-1 on all 34)."""
    import json

    from PIL import Image

    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.deploy.web import export_web
    from mobilenets.weights.checkpoint import load_model

    browser_ready()
    calibrate, held_out = split_photos()
    write_crops(tmp_path / "calibration", 64, photos=calibrate, seed=1)
    folder = tmp_path / "site"
    report = export_web(str(real_mobilenet), folder, int8=True, calibration=tmp_path / "calibration",
                        calibration_images=64)
    assert report["precision"] == "int8" and report["check"]["kind"] == "int8"
    files = write_photos(folder)
    for i, path in enumerate(write_crops(tmp_path / "check", 32, photos=held_out, seed=2)):
        Image.open(path).save(folder / f"crop{i}.png")  # PNG: the page and PIL decode the same pixels
        files.append(f"crop{i}.png")
    sidecar = json.loads((folder / "model.onnx.json").read_text())
    x, ref = eager_reference(load_model(real_mobilenet).eval(), folder, files, sidecar)
    native = load_runner(str(folder / "model.onnx"), threads=2)(x)
    out = page_of(folder).evaluate(RUN_JS, [files, {}, False])
    browser = np.array([row["logits"] for row in out], dtype=np.float32)
    assert np.abs(browser - native).max() <= 1e-4 * max(1.0, float(np.abs(native).max()))
    assert (browser.argmax(1) == native.argmax(1)).all()
    agreement = (browser.argmax(1) == ref.argmax(1)).mean()
    assert agreement == (native.argmax(1) == ref.argmax(1)).mean() and agreement > 0.6
