"""``export_web``: the ONNX export, ONNX Runtime Web's files and the page, in one static folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from mobilenets.deploy.outputs import Staging, check_writable
from mobilenets.deploy.web.kernels import plan_file
from mobilenets.errors import MobileNetsError

# ONNX Runtime Web's WebAssembly build: the ES module, its loader and the SIMD + threads binary.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
STATIC_FILES = ("mobilenet.js", "demo.js", "page.js", "page.css", "index.html")  # package data: deploy/web/static/
# the detector's page (``detect export --format web``): its module, its demo (written as demo.js and index.html)
DETECTOR_STATIC_FILES = {"mobilenet.js": "mobilenet.js", "detector.js": "detector.js", "page.js": "page.js",
                         "page.css": "page.css", "detect-demo.js": "demo.js", "detect.html": "index.html"}
MODEL_FILE = "model.onnx"
RUNTIME_ENV = "MOBILENETS_WEB_MODULES"  # a node_modules folder holding onnxruntime-web, instead of the project's


def runtime_folder() -> Path:
    """Where ONNX Runtime Web's files are: ``$MOBILENETS_WEB_MODULES/onnxruntime-web/dist``, else the
    project's own npm install (``web/node_modules``, made by ``make web``). Missing: one clear error."""
    modules = os.environ.get(RUNTIME_ENV)
    root = Path(modules) if modules else Path(__file__).resolve().parents[4] / "web" / "node_modules"
    folder = root / "onnxruntime-web" / "dist"
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        raise MobileNetsError(f"ONNX Runtime Web is not installed ({folder / missing[0]} is missing): run `make web` "
                              f"(npm ci in web/), or set {RUNTIME_ENV} to a node_modules folder holding onnxruntime-web")
    return folder


def check_output(out: Path, force: bool) -> None:
    """A web export's folder: not a file; not empty unless ``force``."""
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"output {out} is a file; a web export writes a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise MobileNetsError(f"output {out} exists and is not empty; pass --force to write into it")


def write_page(staging: Staging, runtime: Path, static_files: dict[str, str]) -> None:
    """Into ``staging``: ONNX Runtime Web's files (from ``runtime``, :func:`runtime_folder`) and the
    package's ``static/`` files (``{package file: name in the folder}``)."""
    for name in RUNTIME_FILES:
        shutil.copyfile(runtime / name, staging.path(name))
    static = resources.files("mobilenets.deploy.web") / "static"
    for source, name in static_files.items():
        staging.path(name).write_bytes((static / source).read_bytes())


def export_web(model_or_checkpoint: Any, output: str | os.PathLike, *, int8: bool = False, force: bool = False,
               kernel_plan: bool = True, log: Callable[[str], None] | None = None,
               **export_options: Any) -> dict[str, Any]:
    """Write a static folder ``output`` that runs the model in a browser: ``model.onnx`` and its
    sidecar ``model.onnx.json`` (:func:`~mobilenets.deploy.export.export_model` with ``format="onnx"``:
    the same files and the same check against the eager model, fp32 or ``int8``; ``export_options``
    are its other keywords) rewritten with the kernel plan for ONNX Runtime Web's WebAssembly
    kernels (``kernel_plan``, on by default: :mod:`mobilenets.deploy.web.kernels`; the same values,
    checked as written), ONNX Runtime Web's files (:data:`RUNTIME_FILES`), ``mobilenet.js``
    (``load()``, ``classify(image) -> top-k``) and the demo page ``index.html``.

    A non-empty ``output`` is refused unless ``force`` (then files of the same names are replaced);
    every file is written to a staging folder first, so a failed export leaves nothing behind.
    The page must be served over HTTP (``python -m http.server -d OUTPUT``): browsers do not run
    WebAssembly modules from ``file://``. Returns the ONNX export's report plus ``folder`` and ``files``."""
    from mobilenets.deploy.export import export_model

    out = Path(output)
    check_output(out, force)
    runtime = runtime_folder()  # before the slow work: a missing npm install fails at once
    check_writable(out.parent if not out.is_dir() else out)
    with Staging(out) as staging:
        model_path = staging.path(MODEL_FILE)
        report = export_model(model_or_checkpoint, model_path, "onnx", int8=int8, log=log,
                              rewrite=plan_file if kernel_plan else None, **export_options)
        staging.path(MODEL_FILE + ".json")  # the sidecar export_model wrote beside the model
        write_page(staging, runtime, {name: name for name in STATIC_FILES})
        files = [p.name for p in staging.commit()]
    report.update(output=str(out / MODEL_FILE), sidecar=str(out / (MODEL_FILE + ".json")), folder=str(out),
                  files=files, web_runtime=f"onnxruntime-web ({', '.join(RUNTIME_FILES)})")
    return report
