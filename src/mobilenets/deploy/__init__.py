"""Shipping a model: BatchNorm folding, fast PyTorch paths, quantization, export formats, runtimes."""
