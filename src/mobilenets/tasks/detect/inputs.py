"""How an image becomes an SSD's square input, and how boxes go back to the image's pixels.

A :class:`~mobilenets.tasks.detect.config.DetectorConfig` records the input handling of the
detector's source (``input_resize``, ``input_pad``, ``pad_rounded_scale``), so that a converted
detector sees its images as it did where it came from:

* ``input_resize="antialias"``: torchvision's antialiased bilinear resize (our data pipeline's);
  ``"tf_legacy"``: TensorFlow's legacy bilinear resize, as ``tf.image.resize_bilinear`` (TF1, the
  TF OD API's exports) and TF.js ``tf.image.resizeBilinear`` with ``alignCorners`` and
  ``halfPixelCenters`` false: output pixel ``i`` reads input ``i * in / out`` (no half-pixel
  offset, no antialiasing). torch's ``interpolate`` has no such mode (its ``align_corners=False`` is
  the half-pixel rule), so :func:`tf_legacy_resize` gathers the two neighbours itself.
* ``input_pad="bottom_right"``: the short side is zero-padded (black) at the bottom or right to a
  square first (face-api's ``padToSquare``); boxes then map back through the padded square.
"""

from __future__ import annotations

import torch
from PIL import Image


def _axis(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF legacy bilinear sampling along one axis: lower index, upper index, upper weight."""
    scale = size_in / size_out
    src = torch.arange(size_out, dtype=torch.float64) * scale
    low = src.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    return low, high, (src - low.double())


def tf_legacy_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` (``[..., H, W]``, float) resized to ``height`` x ``width`` as TF's legacy bilinear
    resize: ``top = tl + (tr - tl) * dx``, ``bottom = bl + (br - bl) * dx``, ``top + (bottom - top) * dy``
    (TF.js's CPU kernel's order of operations), computed in float64."""
    y0, y1, dy = _axis(x.shape[-2], height)
    x0, x1, dx = _axis(x.shape[-1], width)
    v = x.double()
    top, bottom = v[..., y0, :], v[..., y1, :]
    dx = dx.view(*([1] * (v.dim() - 1)), -1)
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * dx
    out = top + (bottom - top) * dy.view(-1, 1)
    return out.to(x.dtype)


def pad_bottom_right(x: torch.Tensor) -> torch.Tensor:
    """``x`` (``[..., H, W]``) zero-padded at the bottom or right to a square."""
    h, w = x.shape[-2:]
    side = max(h, w)
    return torch.nn.functional.pad(x, [0, side - w, 0, side - h])


def ssd_input(image: Image.Image, config) -> tuple[torch.Tensor, tuple[float, float]]:
    """``image`` as the ``[3, R, R]`` float tensor in [0, 1] the SSD of ``config`` takes, and the
    ``(x, y)`` factors that take a box in that input's pixels back to ``image``'s pixels."""
    from torchvision.transforms.v2 import functional as F

    r = config.resolution
    w, h = image.width, image.height
    x = F.to_image(image).as_subclass(torch.Tensor).float()  # 0..255
    if config.input_pad == "bottom_right":
        x = pad_bottom_right(x)
        side = max(w, h)
        if config.pad_rounded_scale:
            # face-api's locateFaces maps back through the rounded size of the resized image:
            # box / R * (R / round(w * R / side)) * w per axis
            sx, sy = w / round(w * r / side), h / round(h * r / side)
        else:
            sx = sy = side / r
    else:
        sx, sy = w / r, h / r
    if config.input_resize == "tf_legacy":
        if tuple(x.shape[-2:]) != (r, r):  # TF.js skips the resize when the size is already right
            x = tf_legacy_resize(x, r, r)
        x = x / 255
    else:  # the data pipeline's conversion and resize, as before
        x = F.resize(F.to_dtype(x.to(torch.uint8), torch.float32, scale=True), [r, r], antialias=True)
    return x, (sx, sy)


__all__ = ["pad_bottom_right", "ssd_input", "tf_legacy_resize"]
