"""The engines ``mobilenet bench`` knows: their names, precisions, descriptions and default sets.

Imports nothing heavy, so the command line can list the engines in its help and the library can
check an engine name before any engine is built.
"""

from __future__ import annotations

from collections.abc import Iterable

from mobilenets.errors import MobileNetsError

OURS = ("torch-eager", "torch-compile", "torch-fast", "torch-fast-bf16", "onnxruntime", "onnxruntime-int8", "tflite",
        "tflite-int8", "executorch", "executorch-int8")
PEERS = ("timm-eager", "keras-tflite", "timm-onnxruntime-int8")
ENGINES = OURS + PEERS
EXPORTED = ("onnxruntime", "onnxruntime-int8", "tflite", "tflite-int8", "executorch", "executorch-int8")
# The engines that run code compiled by torch.compile (dynamo's caches are process-wide).
COMPILED = ("torch-compile", "torch-fast", "torch-fast-bf16")
NATIVE = ("torch-fast", "torch-fast-bf16", "torch-compile", "torch-eager")
PRECISION = {"torch-eager": "fp32", "torch-compile": "fp32", "torch-fast": "fp32", "torch-fast-bf16": "bf16",
             "onnxruntime": "fp32", "onnxruntime-int8": "int8", "tflite": "fp32", "tflite-int8": "int8",
             "executorch": "fp32", "executorch-int8": "int8", "timm-eager": "fp32", "keras-tflite": "fp32",
             "timm-onnxruntime-int8": "int8"}
DESCRIPTION = {
    "torch-eager": "MobileNet module, inference_mode",
    "torch-compile": "torch.compile (Inductor, freezing, channels_last)",
    "torch-fast": "BN folded, channels_last, torch.compile (freezing, C++ wrapper)",
    "torch-fast-bf16": "BN folded, channels_last, bfloat16, torch.compile (freezing, C++ wrapper)",
    "onnxruntime": "mobilenet export onnx; ORT CPU, graph optimisation ALL",
    "onnxruntime-int8": "mobilenet export onnx --int8 (QDQ, per-channel); ORT CPU",
    "tflite": "mobilenet export tflite; TFLite interpreter (XNNPACK)",
    "tflite-int8": "mobilenet export tflite --int8 (full integer); TFLite interpreter (XNNPACK)",
    "executorch": "mobilenet export executorch (XNNPACK delegate)",
    "executorch-int8": "mobilenet export executorch --int8 (PT2E XNNPACKQuantizer, per-channel); XNNPACK delegate",
    "timm-eager": "timm mobilenetv1_100, eager, inference_mode",
    "keras-tflite": "keras.applications.MobileNet -> TFLiteConverter fp32; TFLite interpreter (XNNPACK)",
    "timm-onnxruntime-int8": "timm mobilenetv1_100 -> torch.onnx -> ORT quantize_static (QDQ, per-channel)",
}
# The fast default for all models: one engine of each kind that builds in seconds.
ALL_MODELS_ENGINES = ("torch-eager", "torch-fast", "onnxruntime")
# The default of a quick (smoke) run: eager PyTorch and one exported file, both built in seconds.
# Every other engine costs 7-30 s to build on 2 cores (compilation, TFLite conversion, int8
# calibration), which would put a smoke run past half a minute.
QUICK_ENGINES = ("torch-eager", "onnxruntime")
PROFILE_ENGINES = ("torch-eager", "onnxruntime", "onnxruntime-int8")


def resolve_engines(engines: Iterable[str] | None, peers: bool = False) -> list[str]:
    """The engines to run: ``engines`` (default: all of ours), checked, without repeats, and with
    ``peers`` the peers after them. A string is a comma-separated list."""
    if isinstance(engines, str):
        engines = engines.split(",")
    names = list(OURS) if engines is None else [e.strip() for e in engines if e.strip()]
    unknown = [e for e in names if e not in ENGINES]
    if unknown:
        raise MobileNetsError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    if peers:
        names += [p for p in PEERS if p not in names]
    if not names:
        raise MobileNetsError("no engines to run")
    return list(dict.fromkeys(names))
