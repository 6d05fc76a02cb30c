"""The web export: a static folder that runs the model in a browser (:func:`export_web`).

The model is the ONNX export (:func:`mobilenets.deploy.export.export_model`: the same file, sidecar
and check), run by ONNX Runtime Web's WebAssembly build, whose files are copied in from the
project's npm install (``web/node_modules``; nothing is fetched from a CDN). ``mobilenet.js`` (an
ES module) applies the recorded preprocessing exactly as the Python side does; ``index.html`` is a
demo page. This package imports nothing heavy.
"""

from mobilenets.deploy.web.export import (
    DETECTOR_STATIC_FILES,
    RUNTIME_FILES,
    STATIC_FILES,
    check_output,
    export_web,
    runtime_folder,
    write_page,
)

__all__ = ["DETECTOR_STATIC_FILES", "RUNTIME_FILES", "STATIC_FILES", "check_output", "export_web", "runtime_folder",
           "write_page"]
