"""Decoding and random-resized cropping in one step, with JPEGs decoded at reduced scale."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2 as T

from mobilenets.errors import MobileNetsError

try:  # libjpeg-turbo with scaled decoding; PIL's draft() is the fallback
    import simplejpeg
except ImportError:  # pragma: no cover - a platform without its wheel
    simplejpeg = None


class DraftRandomResizedCrop:
    """Decode + RandomResizedCrop in one step, decoding JPEGs at reduced size when it is free;
    returns the crop as a ``uint8`` tensor ``[3, size, size]``.

    The crop box is drawn first, from the image size in the file header, with torchvision's own
    ``RandomResizedCrop.get_params`` (same distribution, same RNG draws). libjpeg(-turbo) can
    decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost; we take the smallest of those
    scales at which the chosen box still has at least ``size`` pixels a side, so the output has
    the same resolution as a full decode, then crop and resize (bilinear with antialiasing, as
    PIL's, here on the uint8 tensor: ~3x faster than PIL's resize) to ``size`` x ``size``. The
    box edges are rounded to the decoded pixel grid (at most ``step / 2`` full-image pixels; see
    :meth:`sample`).

    JPEGs are decoded with simplejpeg (libjpeg-turbo, accurate DCT and upsampling): at 128 px
    this whole step costs ~1.0 ms an image against ~1.5 ms with PIL's ``draft`` and ~2.6 ms for
    torchvision's ``ImageFolder`` + ``RandomResizedCrop`` (``benchmarks/train_throughput.py``).
    Without simplejpeg, or for a JPEG it cannot read (CMYK), PIL's ``draft`` does the reduced
    decode; other formats decode in full with PIL. A file neither can read raises. Picklable,
    so it works in DataLoader workers."""

    def __init__(self, size: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)

    def sample(self, width: int, height: int) -> tuple[tuple[int, int, int, int], int]:
        """Draw a crop for a ``width`` x ``height`` image: ``(box, step)``, where the image is
        decoded at 1/``step`` scale (1, 2, 4 or 8) and ``box = (left, top, right, bottom)`` is in
        full-image pixels, its edges rounded to multiples of ``step`` (the decoded pixel grid)."""
        # A zero-storage tensor of the right shape: get_params only reads the size.
        top, left, h, w = T.RandomResizedCrop.get_params(
            torch.empty(1, 1, 1).expand(1, height, width), list(self.scale), list(self.ratio))
        step = 1
        while step < 8 and min(w, h) // (2 * step) >= self.size:
            step *= 2
        x0, y0 = round(left / step), round(top / step)
        x1, y1 = max(x0 + 1, round((left + w) / step)), max(y0 + 1, round((top + h) / step))
        return (x0 * step, y0 * step, x1 * step, y1 * step), step

    def __call__(self, path: str) -> torch.Tensor:
        with open(path, "rb") as fh:
            data = fh.read()
        pixels = None
        if simplejpeg is not None and data[:2] == b"\xff\xd8":
            try:
                height, width = simplejpeg.decode_jpeg_header(data)[:2]
            except ValueError:
                height = width = 0  # let PIL try, and raise its own error if it cannot either
            if height and width:
                box, step = self.sample(width, height)
                try:
                    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-height // step),
                                                     min_width=-(-width // step))
                except ValueError:  # PIL decodes it (CMYK, ...) or raises; the box is already drawn
                    pixels = _pil_reduced(data, width, height, step)
        if pixels is None:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
            except UnidentifiedImageError:  # PIL's message would name the BytesIO, not the file
                raise UnidentifiedImageError(f"cannot identify image file {path}") from None
            box, step = self.sample(width, height)
            pixels = _pil_reduced(data, width, height, step)
        if pixels.shape[:2] == (height, width):
            step = 1  # decoded in full (not a JPEG): the box is on the full grid too
        elif pixels.shape[:2] != (-(-height // step), -(-width // step)):
            raise MobileNetsError(f"decoded {path} at {pixels.shape[1]}x{pixels.shape[0]}, expected 1/{step} "
                             f"of {width}x{height}")
        x0, y0, x1, y1 = (v // step for v in box)
        crop = torch.from_numpy(pixels[y0:y1, x0:x1]).permute(2, 0, 1).unsqueeze(0)  # channels-last view
        out = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return out[0]


def _pil_reduced(data: bytes, width: int, height: int, step: int) -> np.ndarray:
    """``data`` decoded by PIL as RGB ``uint8`` [H, W, 3]; JPEGs at 1/``step`` scale (``draft``)."""
    with Image.open(io.BytesIO(data)) as image:
        if step > 1:
            image.draft("RGB", (-(-width // step), -(-height // step)))
        return np.array(image.convert("RGB"))  # writable, for torch.from_numpy
