"""Inference: where and how tensors run (:class:`StepContext`: device, bf16 autocast,
channels_last, float64) and the one batched loop every evaluation and prediction goes through
(:func:`run_batches`), with its thin layers: a task's metrics (:func:`evaluate`), stacked outputs
(:func:`predict_outputs`) and image files (:func:`predict_files`)."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".context": ["StepContext", "prepare_model", "inference_context"],
    ".loop": ["run_batches", "evaluate", "predict_outputs"],
    ".images": ["image_batches", "predict_files"],
})
