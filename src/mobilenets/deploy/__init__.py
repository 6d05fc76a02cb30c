"""Shipping a model: BatchNorm folding, export formats, int8 (post-training and QAT), runtimes.

``fold`` makes the deployable network, ``fast`` runs it fast inside PyTorch, ``sources`` and
``calibration`` gather what an export starts from, ``qat`` fine-tunes for int8, ``formats``
writes each file format, ``ort`` is every ONNX Runtime session and the ONNX int8 pipeline,
``export`` runs it all and checks the result, ``outputs`` is every exporter's failure policy
(staged files, moved into place only when the checks pass), ``runtime`` runs an exported file,
``predict`` labels images. The names below load on first use (nothing heavy is imported with
the package).
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".fold": ["InferenceNet", "fold_batchnorm", "fold_conv_bn", "fold_sequence", "inference_network"],
    ".fast": ["fast_inference", "fast_bf16_inference_model", "realistic_batchnorm"],
    ".sources": ["Source", "resolve_source"],
    ".calibration": ["ImageSet", "calibration_images"],
    ".qat": ["qat_finetune"],
    ".formats": ["FORMATS", "INT8_FORMATS", "sidecar_path"],
    ".export": ["export_model", "check_text", "describe_preprocessing", "FP32_TOLERANCE"],
    ".outputs": ["ExportCheckFailed", "Staging", "check_writable"],
    ".ort": ["quantize_qdq", "conv_weight_bits"],
    ".runtime": ["Runner", "load_runner", "format_of", "RUNTIME_FORMATS"],
    ".predict": ["predict"],
})
