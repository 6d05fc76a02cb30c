"""Run an exported model: one callable per format, each engine set up as its docs advise for speed.

``load_runner(path)`` returns a :class:`Runner`; ``runner(x)`` takes a float32 NCHW numpy batch
(any batch size) and returns the logits as a float32 numpy array ``[N, classes]``. The format
comes from the file name (every suffix export writes: ``.onnx``, ``.tflite``, ``.pte``,
``.pt``/``.ts``/``.torchscript``) or, for another name, from the file's first bytes
(:func:`format_of`); a ``.pt`` file must really be TorchScript (a training checkpoint is also
``.pt``). :func:`is_exported_model` tells an export from a checkpoint, so ``eval`` and
``predict`` take either; the runner's :attr:`Runner.preprocessing` and :attr:`Runner.classes`
come from the export's sidecar ``OUTPUT.json``.

* ONNX: :func:`mobilenets.deploy.ort.session` (ONNX Runtime on the CPU provider, graph
  optimisation level ALL, ``intra_op_num_threads=threads``, one inter-op thread, sequential).
* TFLite: ``tf.lite.Interpreter(num_threads=threads)``, whose default op resolver applies the
  XNNPACK delegate; the input is resized when the batch size changes. Exports take NHWC (the
  TFLite layout); ``runner(x)`` transposes the NCHW batch, ``runner.native(x)`` takes NHWC.
* ExecuTorch: the ``executorch.runtime`` Python API; the program's XNNPACK delegate runs the
  network. Its memory is planned for a bounded batch (read from the program); larger batches are
  run in chunks of that size.
* TorchScript: ``torch.jit.load`` then ``torch.jit.optimize_for_inference`` (frozen at export).
  PyTorch's thread count is process-wide, so the load and each call run inside
  :func:`~mobilenets.utils.scoped.torch_threads` and the caller's count is restored after.

ExecuTorch's XNNPACK thread pool is process-wide too, and resizing it costs ~30 us and a log
line, so it is sized to ``threads`` when a program is loaded and left so (it is ExecuTorch's own
pool: torch's thread count is not touched).

Engines are imported only when a file of theirs is loaded.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.deploy.formats import SUFFIXES, sidecar_path
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.utils.tf import import_tf

RUNTIME_FORMATS = SUFFIXES  # the suffixes export writes, and the format of each
# FlatBuffer file identifiers at bytes 4..8: TFLite "TFL3", ExecuTorch "ET" + a version ("ET12").
_FLATBUFFER_IDS = ((b"TFL3", "tflite"), (b"ET", "executorch"))


# The input layout each engine's model takes natively (TFLite is NHWC); others take NCHW.
NATIVE_LAYOUT = {"tflite": "NHWC"}


class Runner:
    """A loaded model: call it on a float32 NCHW batch to get logits; :meth:`native` takes the
    engine's own layout (:attr:`layout`) without the conversion, as a camera pipeline would."""

    def __init__(self, path: Path, format: str, fn: Callable[[np.ndarray], np.ndarray], threads: int,
                 meta: dict[str, Any] | None) -> None:
        self.path = path
        self.format = format
        self.threads = threads
        self.meta = meta  # the export's sidecar report, where there is one
        self.layout = NATIVE_LAYOUT.get(format, "NCHW")
        self.engine = fn  # the engine's own call, on a batch in its layout

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4:
            raise MobileNetsError(f"expected an NCHW batch, got an array of shape {x.shape}")
        if self.layout == "NHWC":
            import torch

            # torch's permute copy is ~4x faster than numpy's transpose copy here (0.08 vs 0.34 ms
            # for 1x3x224x224), which is 5 % of a TFLite fp32 call
            x = torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(0, 2, 3, 1).contiguous().numpy()
        return self.native(x)

    def native(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch already in :attr:`layout` (``NHWC`` for TFLite)."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise MobileNetsError(f"expected a 4-d {self.layout} batch, got an array of shape {x.shape}")
        return self.engine(np.ascontiguousarray(x, dtype=np.float32))

    @property
    def preprocessing(self):
        """The :class:`~mobilenets.data.preprocess.Preprocessing` the export's sidecar records."""
        from mobilenets.data.preprocess import Preprocessing

        recorded = (self.meta or {}).get("preprocessing")
        if not isinstance(recorded, dict):
            raise MobileNetsError(f"{self.path} has no sidecar {sidecar_path(self.path).name} with its preprocessing "
                                  f"(export_model writes one beside the file)")
        return Preprocessing.from_dict(recorded)

    @property
    def classes(self) -> list[str] | None:
        """The class names the export's sidecar records (None where it records none)."""
        names = (self.meta or {}).get("classes")
        return [str(c) for c in names] if names else None

    def __repr__(self) -> str:
        return f"Runner({self.format}, {str(self.path)!r}, threads={self.threads})"


def _onnx(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from mobilenets.deploy.ort import session as ort_session

    session = ort_session(path, threads)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def _tflite_io(inp: dict[str, Any], out: dict[str, Any]):
    """The float32 <-> tensor conversions of a TFLite file whose input/output are quantized (uint8 or
    int8: TF-slim's published ``_quant`` files, any fully-integer export); identity for float I/O.
    A quantized output with TFLite's fixed softmax quantization (scale 1/256, zero point 0 for uint8
    or -128 for int8, https://ai.google.dev/edge/litert/models/quantization_spec) holds probabilities:
    their log is returned, logits whose softmax gives them back."""
    def quantize(x: np.ndarray) -> np.ndarray:
        if not np.issubdtype(inp["dtype"], np.integer):
            return x
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])

    def dequantize(y: np.ndarray) -> np.ndarray:
        if not np.issubdtype(out["dtype"], np.integer):
            return y
        scale, zero = out["quantization"]
        values = (y.astype(np.float32) - zero) * np.float32(scale)
        softmax_zero = 0 if out["dtype"] == np.uint8 else -128
        if scale == 1 / 256 and zero == softmax_zero:
            return np.log(np.maximum(values, np.float32(1 / 512)))  # 0 probability -> below the smallest step
        return values

    return quantize, dequantize


def _tflite(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    tf = import_tf()

    try:
        interp = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise MobileNetsError(f"cannot load TFLite model {path}: {str(exc).splitlines()[0]}") from None
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    state = {"batch": None}
    quantize, dequantize = _tflite_io(inp, out)
    # a batch dimension fixed at 1 (TF1 converted files, the published TF-slim ones): one image per call
    one_at_a_time = int(inp.get("shape_signature", inp["shape"])[0]) == 1

    def run(nhwc: np.ndarray) -> np.ndarray:
        if one_at_a_time and len(nhwc) != 1:
            return np.concatenate([run(nhwc[i:i + 1]) for i in range(len(nhwc))])
        if state["batch"] != len(nhwc):
            interp.resize_tensor_input(inp["index"], list(nhwc.shape), strict=True)
            interp.allocate_tensors()
            state["batch"] = len(nhwc)
        interp.set_tensor(inp["index"], quantize(nhwc))
        interp.invoke()
        return dequantize(interp.get_tensor(out["index"]).copy())

    return run


def _executorch(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    try:  # XNNPACK's thread pool is process-wide and sized to the cores; honour ``threads``
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)  # "unsafe" only while a method runs
    except (ImportError, AttributeError):  # another ExecuTorch version: its default pool
        pass
    try:
        program = runtime.load_program(str(path))
        method = program.load_method("forward")
    except (RuntimeError, ValueError, OSError) as exc:
        raise MobileNetsError(f"cannot load ExecuTorch program {path}: {str(exc).splitlines()[0]}") from None

    # The program's memory is planned for a bounded batch (the input's planned size); larger
    # batches run in chunks of that size.
    max_batch = int(method.metadata.input_tensor_meta(0).sizes()[0])

    def run(x: np.ndarray) -> np.ndarray:
        parts = [method.execute([torch.from_numpy(x[i:i + max_batch])])[0].numpy().copy()
                 for i in range(0, len(x), max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return run


def _torchscript(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    from mobilenets.utils.scoped import torch_threads

    with torch_threads(threads):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise MobileNetsError(f"cannot load TorchScript model {path}: {str(exc).splitlines()[0]}") from None
        module = torch.jit.optimize_for_inference(module.eval())

    def run(x: np.ndarray) -> np.ndarray:
        with torch_threads(threads), torch.inference_mode():
            return module(torch.from_numpy(x)).numpy().copy()

    return run


_LOADERS = {"onnx": _onnx, "tflite": _tflite, "executorch": _executorch, "torchscript": _torchscript}


def _zip_kind(path: Path) -> str | None:
    """``"torchscript"`` for a TorchScript archive (a zip with a ``code/`` folder), ``"zip"`` for
    another zip (``torch.save`` files, e.g. training checkpoints, also named ``.pt``), None for no
    zip. Only the zip directory is read: nothing is unpickled."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    return "torchscript" if any(name.split("/")[1:2] == ["code"] for name in names) else "zip"


def sniff_format(path: str | os.PathLike) -> str | None:
    """The export format of a file judged by its content, or None if it is none of them. TFLite
    and ExecuTorch files carry a FlatBuffer identifier, TorchScript is a zip with ``code/``, and
    an ONNX model is a protobuf whose first field is ``ir_version`` (tag byte 0x08)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for ident, fmt in _FLATBUFFER_IDS:
        if head[4:4 + len(ident)] == ident:
            return fmt
    if head[:4] == b"PK\x03\x04":
        return "torchscript" if _zip_kind(p) == "torchscript" else None
    return "onnx" if head[:1] == b"\x08" else None


def format_of(path: str | os.PathLike) -> str:
    """The export format of a file: from its suffix (a ``.pt``/``.ts`` file that is a zip must be
    a TorchScript archive, not a ``torch.save`` checkpoint), else from its content
    (:func:`sniff_format`)."""
    p = Path(path)
    named = RUNTIME_FORMATS.get(p.suffix.lower())
    if named == "torchscript" and p.is_file() and _zip_kind(p) == "zip":
        raise MobileNetsError(f"{p} is not a TorchScript export (a training checkpoint? load it with "
                              f"mobilenets.weights.checkpoint.load_checkpoint)")
    found = named or (sniff_format(p) if p.is_file() else None)
    if found is None:
        raise MobileNetsError(f"cannot tell the format of {p}: expected one of {', '.join(RUNTIME_FORMATS)} "
                              f"(or a file whose content is one of them)")
    return found


def is_exported_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that :func:`load_runner` runs (an export), rather than a
    checkpoint (folder, ``.safetensors``, training ``.pt``): decided by suffix and content."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() in (".safetensors", ".json"):
        return False
    named = RUNTIME_FORMATS.get(p.suffix.lower())
    if named == "torchscript":
        return _zip_kind(p) == "torchscript"
    return named is not None or sniff_format(p) is not None


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The export's sidecar ``PATH.json`` as a dictionary (None where there is none, or it is not
    a JSON object)."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def refuse_detector(path: str | os.PathLike, meta: dict[str, Any] | None) -> None:
    """A classifier command given an exported detector (its sidecar describes a detector): one line
    saying what the file is and where it runs."""
    detector = (meta or {}).get("detector")
    if isinstance(detector, dict):
        kind = str(detector.get("detector") or "ssd")
        raise MobileNetsError(f"{path} is an exported detector ({kind}, {len(meta.get('classes') or [])} classes; "
                              f"its sidecar {sidecar_path(path).name} describes its outputs): `mobilenet eval` and "
                              f"`mobilenet predict` run classifiers; use `mobilenet detect predict` or "
                              f"`mobilenet detect eval` with the detection run")


def load_runner(path: str | os.PathLike, threads: int = 2, format: str | None = None) -> Runner:
    """Load an exported model for inference with ``threads`` CPU threads."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"exported model not found: {p}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise MobileNetsError(f"threads must be an integer >= 1, got {threads!r}")
    fmt = format or format_of(p)
    if fmt not in _LOADERS:
        raise MobileNetsError(f"unknown format {fmt!r}; choose one of {', '.join(_LOADERS)}")
    meta = read_sidecar(p)
    with warnings.catch_warnings():  # the engines' deprecation and "experimental API" notices
        warnings.simplefilter("ignore")
        fn = _LOADERS[fmt](p, threads)
    return Runner(p, fmt, fn, threads, meta)


def open_exported(path: str | os.PathLike, threads: int = 2, verbose: bool = False) -> Runner:
    """:func:`load_runner` for ``eval`` and ``predict``: the export must have its sidecar (its
    preprocessing and classes), and what the engine prints while it starts (TensorFlow's start-up
    lines, the XNNPACK delegate's notice on the first call) is silenced unless ``verbose``: the
    file is loaded and run once on a blank image inside :func:`~mobilenets.utils.scoped.quiet_output`."""
    from mobilenets.utils.scoped import quiet_output

    refuse_detector(path, read_sidecar(path))
    with quiet_output(not verbose):
        runner = load_runner(path, threads=threads)
        res = runner.preprocessing.resolution
        runner(np.zeros((1, 3, res, res), np.float32))
    return runner
