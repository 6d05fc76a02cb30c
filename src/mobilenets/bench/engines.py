"""Our inference engines, as ``mobilenet bench`` builds them: one builder per engine name.

A builder takes the :class:`BenchContext` (the model, the settings, a work folder for exported
files) and a batch size, and returns a callable that runs one forward pass on a fixed batch of
that size (in the engine's own input layout: layout changes stay out of the timing). One that
cannot be built here raises :class:`EngineUnavailable`, which ``bench`` reports as a row.

* ``torch-eager``: the :class:`~mobilenets.models.mobilenet.MobileNet` module, ``torch.inference_mode``;
* ``torch-compile``: ``torch.compile`` (Inductor) with weight freezing and a channels_last model,
  as PyTorch's CPU inference guide recommends;
* ``torch-fast`` / ``torch-fast-bf16``: :func:`mobilenets.deploy.fast.fast_inference` (BatchNorm
  folded, channels_last, compiled with freezing and the C++ wrapper) and its bfloat16 form;
* ``onnxruntime`` / ``onnxruntime-int8``, ``tflite`` / ``tflite-int8``, ``executorch`` /
  ``executorch-int8``: the files ``mobilenet export`` writes, run by
  :func:`mobilenets.deploy.runtime.load_runner`;
* an exported file given to ``bench`` (:mod:`mobilenets.bench.exported`): :func:`build_exported_file`
  runs it the same way, under the engine name of its format and precision.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mobilenets.bench.exported import FILE_ENGINE
from mobilenets.bench.timing import BenchSettings
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet

Run = Callable[[], Any]


class EngineUnavailable(Exception):
    """An engine cannot be built here (not installed, export failed, ...): reported as a row."""


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``: an engine's failure, short enough for a row."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class BenchContext:
    """What engines are built from: the model, the settings, a work folder for exported files;
    ``cache`` keeps what several builders (or batch sizes) share, ``notes`` what a builder wants
    said about how it built its engine; ``verbose`` lets the exporters print. With an exported
    file to time (``exported``, a :class:`~mobilenets.bench.exported.ExportedFile`) there is no
    model: ``cfg`` is the file's config."""

    def __init__(self, model: MobileNet | None, settings: BenchSettings, workdir: str, verbose: bool = False,
                 exported: Any = None, checkpoint: str | os.PathLike | None = None,
                 calibration: str | os.PathLike | None = None, int8_method: str = "auto") -> None:
        self.model = model
        self.exported = exported
        self.checkpoint = checkpoint  # where ``model`` was loaded from, if it was: its recorded data calibrates
        self.calibration = calibration
        self.int8_method = int8_method  # of the int8 exports (mobilenets.deploy.ptq.INT8_METHODS or "auto")
        self.verbose = verbose
        self.cfg: MobileNetConfig = model.config if model is not None else exported.config
        self.settings = settings
        self.workdir = workdir
        self.cache: dict[str, Any] = {}
        self.notes: dict[str, str] = {}

    def images(self, batch: int) -> np.ndarray:
        """A fixed batch of random NCHW float32 images (the same for every engine)."""
        res = self.cfg.resolution
        return np.random.default_rng(batch).standard_normal((batch, 3, res, res)).astype(np.float32)

    def int8_calibration(self) -> tuple[Any, str | None]:
        """``(calibration, note)`` for the int8 exports: the one given; else the data the
        checkpoint records it was trained on; else the built-in digits (the latency of an int8
        file does not depend on what calibrated it; its accuracy does), said in the note."""
        if self.calibration is not None:
            return self.calibration, None
        if "data" not in self.cache:
            from mobilenets.deploy.sources import resolve_source

            self.cache["data"] = resolve_source(os.fspath(self.checkpoint)).data if self.checkpoint else None
        if self.cache["data"] is None:
            from mobilenets.deploy.sources import DIGITS

            return DIGITS, (f"calibrated on the built-in {DIGITS} (the model records no training data; "
                            f"calibration=FOLDER calibrates on real images): its latency, not its accuracy")
        return None, None

    def export(self, fmt: str, int8: bool) -> str:
        """The model exported by ``mobilenet export`` to ``fmt`` (once per format)."""
        key = f"export:{fmt}:{int8}"
        if key not in self.cache:
            from mobilenets.deploy.export import export_model

            ext = {"onnx": "onnx", "tflite": "tflite", "executorch": "pte"}[fmt]
            path = os.path.join(self.workdir, f"model{'-int8' if int8 else ''}.{ext}")
            calibration, note = self.int8_calibration() if int8 else (None, None)
            if note:
                self.notes[FILE_ENGINE[(fmt, "int8")]] = note
            try:
                # int8 on a checkpoint's recorded data: from the checkpoint itself, where export finds that data
                own_data = int8 and calibration is None and self.checkpoint is not None
                source = os.fspath(self.checkpoint) if own_data else self.model
                # on the digits stand-in the file's agreement with fp32 says nothing (the note says so):
                # no accuracy floor there, or a real model's int8 latency could not be measured at all
                floor = {"min_agreement": 0.0} if note else {}
                export_model(source, path, fmt, int8=int8, calibration=calibration, threads=self.settings.runtime_threads,
                             calibration_size=self.settings.calibration_size, verbose=self.verbose,
                             int8_method=self.int8_method if int8 else "auto", **floor)
            except (ImportError, ValueError, RuntimeError, OSError) as exc:
                raise EngineUnavailable(f"export to {fmt}{' int8' if int8 else ''} failed: "
                                        f"{first_line(exc)}") from None
            self.cache[key] = path
        return self.cache[key]


RANDOM_WEIGHTS = "random weights, BatchNorm statistics from random images"


def load_model(model: str | MobileNetConfig | MobileNet | Mapping[str, Any] | None,
               checkpoint: str | os.PathLike | None = None) -> MobileNet:
    """The float32 eval-mode model to benchmark: ``model`` itself (a MobileNet), the weights of
    ``checkpoint`` (any checkpoint, run folder or converted model folder, whose architecture must
    be ``model``'s when that names one: a registry name, a config or a mapping of config fields),
    or a new model of that registry name or config (default ``mobilenet_v1_1.0_224``) with
    :func:`~mobilenets.deploy.fast.realistic_batchnorm` statistics."""
    from mobilenets.models.registry import get_config

    if isinstance(model, MobileNet):
        return model.float().eval()
    if checkpoint is not None:
        from mobilenets.deploy.sources import resolve_source
        from mobilenets.models.registry import ARCHITECTURE_FIELDS

        expect = (model if model is None or isinstance(model, (str, Mapping))
                  else {f: getattr(model, f) for f in ARCHITECTURE_FIELDS})
        return resolve_source(os.fspath(checkpoint), expect_model=expect).model.float().eval()
    if isinstance(model, Mapping):
        raise TypeError("a mapping of config fields names what a checkpoint must be: pass checkpoint= too")
    from mobilenets.deploy.fast import realistic_batchnorm

    cfg = model if isinstance(model, MobileNetConfig) else get_config(model or "mobilenet_v1_1.0_224")
    return realistic_batchnorm(MobileNet(cfg))


def weights_label(net: MobileNet, checkpoint: str | os.PathLike | None = None) -> str:
    """Where the weights of a given or loaded ``net`` come from, for the rows: ``checkpoint``,
    and the source its ``pretrained_cfg`` records where that is another file (converted weights)."""
    source = (getattr(net, "pretrained_cfg", None) or {}).get("source") or {}
    kind = " ".join(str(source[k]) for k in ("framework", "format") if source.get(k))
    origin = f"{kind}: {source['path']}" if source.get("path") and kind else source.get("path")
    if checkpoint is None:
        return origin or "the model object's own weights"
    converted = origin is not None and source.get("framework") not in (None, "mobilenets")
    return f"checkpoint {os.fspath(checkpoint)}" + (f", converted from {origin}" if converted else "")


def model_label(config: MobileNetConfig) -> str:
    """The registry name of the architecture ``config`` describes, with what it changes of that
    model (a converted TF model: ``mobilenet_v1_1.0_224 (relu6, tf_same padding, 1001 classes)``),
    or its width and resolution."""
    from mobilenets.models.registry import get_config, list_models, model_name

    name = model_name(config.alpha, config.resolution, config.variant)
    if name not in list_models():
        return f"mobilenet alpha={config.alpha:g} res={config.resolution}"
    base = get_config(name)
    changed = [config.activation] * (config.activation != base.activation) \
        + [f"{config.padding} padding"] * (config.padding != base.padding) \
        + [f"{config.num_classes} classes"] * (config.num_classes != base.num_classes)
    return f"{name} ({', '.join(changed)})" if changed else name


def torch_runner(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, channels_last: bool = False) -> Run:
    """``fn(x)`` under ``torch.inference_mode``, ``x`` made channels_last first if asked."""
    def run() -> Any:
        with torch.inference_mode():
            return fn(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

    return run


def build_torch_eager(ctx: BenchContext, batch: int) -> Run:
    return torch_runner(ctx.model, torch.from_numpy(ctx.images(batch)))


def build_torch_compile(ctx: BenchContext, batch: int) -> Run:
    import torch._inductor.config as inductor_config

    m = copy.deepcopy(ctx.model).to(memory_format=torch.channels_last)
    compiled = torch.compile(m, dynamic=False)

    def frozen(x: torch.Tensor) -> torch.Tensor:
        # on every call: see mobilenets.deploy.fast.compiled_inference
        with inductor_config.patch(freezing=True):
            return compiled(x)

    run = torch_runner(frozen, torch.from_numpy(ctx.images(batch)), channels_last=True)
    try:
        run()  # compiles here, with weight freezing
    except Exception as exc:  # Inductor needs a C++ compiler; its errors are of many types
        raise EngineUnavailable(f"torch.compile failed: {first_line(exc)}") from None
    return run


def build_torch_fast(ctx: BenchContext, batch: int) -> Run:
    from mobilenets.deploy.fast import fast_inference

    x = torch.from_numpy(ctx.images(batch))
    fn, how = fast_inference(ctx.model, x)
    ctx.notes["torch-fast"] = how
    return torch_runner(fn, x)


def build_torch_fast_bf16(ctx: BenchContext, batch: int) -> Run:
    from mobilenets.deploy.fast import fast_bf16_inference_model

    x = torch.from_numpy(ctx.images(batch))
    try:
        fn = fast_bf16_inference_model(ctx.model, x)
    except Exception as exc:  # Inductor needs a C++ compiler; its errors are of many types
        raise EngineUnavailable(f"torch.compile failed: {first_line(exc)}") from None
    return torch_runner(fn, x)


def export_builder(fmt: str, int8: bool) -> Callable[[BenchContext, int], Run]:
    """The builder of the engine that runs ``mobilenet export``'s ``fmt`` file."""
    def build(ctx: BenchContext, batch: int) -> Run:
        if fmt == "executorch":
            import importlib.util

            try:
                found = importlib.util.find_spec("executorch.runtime") is not None
            except ImportError:
                found = False
            if not found:
                raise EngineUnavailable("ExecuTorch is not installed (pip install executorch)")
        from mobilenets.deploy.runtime import load_runner

        runner = load_runner(ctx.export(fmt, int8), threads=ctx.settings.runtime_threads)
        x = ctx.images(batch)
        if runner.layout == "NHWC":  # each engine gets its own layout, untimed (as the Keras peer)
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        try:
            runner.native(x)
        except Exception as exc:  # the engine's own error types
            raise EngineUnavailable(f"{fmt} runner failed at batch {batch}: {first_line(exc)}") from None
        return lambda: runner.native(x)

    return build


def build_exported_file(ctx: BenchContext, batch: int) -> Run:
    """The engine of the exported file ``ctx.exported`` (one runner per batch size, as for our
    exports: a TFLite interpreter re-plans its memory when the batch changes)."""
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.errors import MobileNetsError

    f = ctx.exported
    try:
        runner = load_runner(f.path, threads=ctx.settings.runtime_threads)
    except (ImportError, MobileNetsError) as exc:
        raise EngineUnavailable(f"cannot load {f.path}: {first_line(exc)}") from None
    x = ctx.images(batch)
    if runner.layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    try:
        runner.native(x)
    except Exception as exc:  # the engine's own error types
        raise EngineUnavailable(f"{f.path} failed at batch {batch}: {first_line(exc)}") from None
    return lambda: runner.native(x)


OUR_BUILDERS: dict[str, Callable[[BenchContext, int], Run]] = {
    "torch-eager": build_torch_eager,
    "torch-compile": build_torch_compile,
    "torch-fast": build_torch_fast,
    "torch-fast-bf16": build_torch_fast_bf16,
    "onnxruntime": export_builder("onnx", False),
    "onnxruntime-int8": export_builder("onnx", True),
    "tflite": export_builder("tflite", False),
    "tflite-int8": export_builder("tflite", True),
    "executorch": export_builder("executorch", False),
    "executorch-int8": export_builder("executorch", True),
}
