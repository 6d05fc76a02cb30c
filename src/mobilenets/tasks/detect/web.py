"""``detect export --format web``: an SSD/SSDLite detector in a static folder that runs in a browser.

The classifier's web export (:mod:`mobilenets.deploy.web`) with the detector's ONNX: the file
:func:`~mobilenets.tasks.detect.export.export_detector` writes (box decoding and NMS inside, the
same check against the eager detector, the same sidecar), ONNX Runtime Web's files, and
``detector.js`` (``load()``, ``detect(image) -> [{box, score, label}]``, boxes in the image's
pixels) which applies the detector's recorded input handling (``DetectorConfig.input_pad`` and
``input_resize``, as :func:`~mobilenets.tasks.detect.inputs.ssd_input` does), and a demo page that
draws the boxes on the image.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mobilenets.deploy.formats import sidecar_path

MODEL_FILE = "model.onnx"


def export_detector_web(checkpoint: str, output: str | os.PathLike, *, int8: bool = False, force: bool = False,
                        kernel_plan: bool = True, **export_options: Any) -> dict[str, Any]:
    """Write the static folder ``output``: ``model.onnx`` and ``model.onnx.json`` (the detector's ONNX
    export and sidecar, checked as :func:`~mobilenets.tasks.detect.export.export_detector` checks it;
    with ``int8`` the int8 file, checked against fp32 by AP50; both rewritten first with the kernel
    plan for ONNX Runtime Web, ``kernel_plan``: :mod:`mobilenets.deploy.web.kernels`), ONNX Runtime
    Web's files, ``mobilenet.js``, ``detector.js``, ``demo.js``, ``page.js``, ``page.css`` and
    ``index.html``. ``export_options``: the other keywords of ``export_detector``
    (``calibration``, ``calibration_images``, ``data``, ...).

    A non-empty ``output`` is refused unless ``force``; everything is staged first, so a failed
    check leaves nothing behind. Serve it over HTTP (``python -m http.server -d OUTPUT``).
    Returns the ONNX export's report plus ``folder``, ``files`` and the chosen ``model``."""
    from mobilenets.deploy.outputs import Staging, check_writable
    from mobilenets.deploy.web import DETECTOR_STATIC_FILES, check_output, runtime_folder, write_page
    from mobilenets.deploy.web.kernels import plan_file
    from mobilenets.tasks.detect.export import export_detector

    out = Path(output)
    check_output(out, force)
    runtime = runtime_folder()  # before the slow work: a missing npm install fails at once
    check_writable(out.parent if not out.is_dir() else out)
    with tempfile.TemporaryDirectory(prefix="mobilenet-detect-web-") as tmp:
        report = export_detector(checkpoint, Path(tmp) / "onnx", int8=int8, formats=("onnx",),
                                 rewrite=plan_file if kernel_plan else None, **export_options)
        chosen = next(f for f in report["files"] if f["int8"] == int8)
        with Staging(out) as staging:
            shutil.copyfile(chosen["path"], staging.path(MODEL_FILE))
            shutil.copyfile(sidecar_path(chosen["path"]), staging.path(MODEL_FILE + ".json"))
            write_page(staging, runtime, DETECTOR_STATIC_FILES)
            files = [p.name for p in staging.commit()]
    # every check (with --int8 the fp32 file's too: the int8 one is scored against it); the one file written
    report["checks"] = [f"{'int8' if f['int8'] else 'fp32'}: {f['check']}" for f in report["files"]]
    report["files"] = [{**chosen, "path": str(out / MODEL_FILE)}]
    report.update(output=str(out), folder=str(out), files_written=files, model=str(out / MODEL_FILE),
                  web_runtime="onnxruntime-web")
    return report


__all__ = ["export_detector_web"]
