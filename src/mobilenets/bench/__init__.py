"""Inference speed across engines and where the time goes (``mobilenet bench`` / ``profile``)."""
